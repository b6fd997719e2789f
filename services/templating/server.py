"""Wiring of the templating service: the default templates loaded at start, the use
cases and the servicer. No events in or out: notification calls Render."""

from __future__ import annotations

import logging

from expense.templating.v1 import templating_pb2_grpc
from services.kit.events.subscription import Subscription
from services.kit.grpc.server import ServiceApp
from services.kit.runtime import Runtime
from services.templating.api import SERVICE_NAME, TemplatingServicer
from services.templating.defaults import load_drafts, templates_dir
from services.templating.settings import TemplatingMeshSettings
from services.templating.usecases import Templates

log = logging.getLogger(__name__)
# Every consumer the wiring starts (none); docs/events.md lists them.
SUBSCRIPTIONS: tuple[Subscription, ...] = ()


def build_app(settings: TemplatingMeshSettings) -> ServiceApp:
    runtime = Runtime("templating", settings)
    verifier = runtime.remote_verifier()
    config = settings.templating
    # Read (and checked) before serving: a broken default file stops the start.
    drafts = load_drafts(templates_dir(config.templates_dir))
    templates = Templates(runtime.db, config)
    servicer = TemplatingServicer(templates, config)
    app = runtime.app(
        verifier,
        [(templating_pb2_grpc.add_TemplatingInternalServiceServicer_to_server, servicer, SERVICE_NAME)],
    )

    async def load_defaults() -> None:
        added = await templates.load_defaults(drafts)
        log.info("default templates loaded", extra={"files": len(drafts), "added": added})

    async def close() -> None:
        templates.close()

    app.on_start.append(load_defaults)
    app.on_stop.append(close)
    return app
