"""NATS's authorization, the same model for `up`'s embedded NATS, docker-compose and k8s:
one user per mesh service, named after it, allowed what services/kit/events/permissions.py
derives from the event registry, plus `admin` (every permission, for operators' tools).
Each password is the variable EM_NATS_PASSWORDS__<USER>, read by nats-server from its
environment and by the service from its own: never written into the config."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence

from services.kit.config.secrets import nats_password
from services.kit.config.settings import MeshSettings
from services.kit.events.permissions import ADMIN, service_permissions
from services.kit.events.subscription import Subscription
from services.kit.events.work_queue import WorkQueue

CONFIG_HEADER = (
    "# NATS users of the mesh, rendered by the launcher from the event registry\n"
    "# (proto/expense/events/v1/events.proto) and the services' consumers; the passwords\n"
    "# come from the environment of nats-server ($EM_NATS_PASSWORDS__<USER>).\n"
)


def password_variable(user: str) -> str:
    return f"EM_NATS_PASSWORDS__{user.upper()}"


def nats_users(services: Sequence[str]) -> list[str]:
    return [*services, ADMIN]


def consumers_of(service: str) -> list[str]:
    """The durable consumers a service declares: SUBSCRIPTIONS of its server module (as
    for docs/events.md)."""
    module = importlib.import_module(f"services.{service}.server")
    subscriptions: tuple[Subscription, ...] = getattr(module, "SUBSCRIPTIONS", ())
    return [subscription.consumer for subscription in subscriptions]


def work_queues_of(service: str) -> list[WorkQueue]:
    """The work queues a service declares: WORK_QUEUES of its server module."""
    module = importlib.import_module(f"services.{service}.server")
    return list(getattr(module, "WORK_QUEUES", ()))


def authorization_config(prefix: str, services: Sequence[str]) -> str:
    """nats-server config text (include it, or pass it with -c) requiring a user per service."""
    users = [
        _user(name, service_permissions(name, prefix, consumers_of(name), work_queues_of(name)))
        for name in services
    ]
    users.append(_user(ADMIN, None))
    return CONFIG_HEADER + "authorization {\n  users: [\n" + "\n".join(users) + "\n  ]\n}\n"


def _user(name: str, permissions: object) -> str:
    # `$VARIABLE` is config syntax, not a string: the rest is JSON, which the format takes.
    fields = [f"user: {json.dumps(name)}", f"password: ${password_variable(name)}"]
    if permissions is not None:
        fields.append(f"permissions: {json.dumps(permissions, indent=2)}")
    body = "\n".join(fields).replace("\n", "\n      ")
    return f"    {{\n      {body}\n    }}"


def embedded_nats_env(settings: MeshSettings) -> dict[str, str]:
    """The password variables of every user of the embedded NATS (generated on first run)."""
    passwords = {user: nats_password(settings, user) for user in nats_users(settings.mesh.services)}
    return {password_variable(user): password for user, password in passwords.items() if password}
