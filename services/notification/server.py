"""Wiring of the notification service: the source events' consumer (the intake), the
profile copy, the delivery work queue's worker and sweep, the providers' adapters
and the in-app channel, templating's client, and the servicers."""

from __future__ import annotations

from expense.events.v1 import events_pb2
from expense.notification.v1 import notification_pb2_grpc
from services.kit.config.secrets import symmetric_key
from services.kit.db.erasure import ErasedUsers, erasing
from services.kit.events.subscription import Subscription
from services.kit.grpc.server import ServiceApp
from services.kit.runtime import Runtime
from services.notification import storage
from services.notification.api import (
    CALLBACK_SERVICE_NAME,
    INTERNAL_SERVICE_NAME,
    SERVICE_NAME,
    CallbackServicer,
    NotificationInternalServicer,
    NotificationServicer,
)
from services.notification.channels import Channel, InAppChannel
from services.notification.providers import build_providers
from services.notification.queue import DELIVERIES, DeliveryQueue
from services.notification.secrets import SecretBox
from services.notification.settings import NotificationMeshSettings
from services.notification.templates import TemplatingClient
from services.notification.usecases import (
    ContactPoints,
    DeadLetters,
    Deliveries,
    Inbox,
    Intake,
    PreferenceCases,
    ProviderCallbacks,
    Receipts,
    Sweep,
)

# The event types that become notifications, a consumer each (one filter subject: any
# NATS takes it); each needs its [notification.sources] section in config/mesh.toml
# (template, variables, severity, default channels).
SOURCES = (
    Subscription("notification_alerts", (events_pb2.AlertRaised,)),
    Subscription("notification_signups", (events_pb2.UserRegistered,)),
    Subscription("notification_password_resets", (events_pb2.PasswordResetRequested,)),
    Subscription("notification_email_verifications", (events_pb2.EmailVerificationRequested,)),
    Subscription("notification_security_events", (events_pb2.SecurityEvent,)),
    Subscription("notification_monthly_reports", (events_pb2.MonthlyReportReady,)),
)
# The user's time zone and locale (quiet hours, digests, templates).
PROFILE_CHANGES = Subscription("notification_profiles", (events_pb2.ProfileUpdated,))
# The account is gone: its rows go (services/kit/db/erasure.py).
DELETIONS = Subscription("notification_erasure", (events_pb2.UserDeleted,))
# Every consumer the wiring starts; docs/events.md lists them.
SUBSCRIPTIONS = (*SOURCES, PROFILE_CHANGES, DELETIONS)
# Its own JetStream work queues (NATS permissions: kit/events/permissions.py).
WORK_QUEUES = (DELIVERIES,)


def build_app(settings: NotificationMeshSettings) -> ServiceApp:
    runtime = Runtime("notification", settings)
    verifier = runtime.remote_verifier()
    config = settings.notification
    queue = DeliveryQueue(runtime.bus, config.delivery)
    # Other producers' events of a user erased meanwhile are skipped (they would bring
    # rows back, or message a deleted account); the record lasts as long as they may come.
    # The sweep's digests (Intake.notify) refuse erased users too.
    erased = ErasedUsers(storage.erased_users)
    templating = TemplatingClient(
        settings.service_address("templating"),
        settings.internal_call_timeout_seconds,
        runtime.service_tokens(),
        settings.resilience,
    )
    providers = build_providers(config.providers)
    channels: dict[str, Channel | InAppChannel] = {"in_app": InAppChannel(), **providers}
    secrets = SecretBox(
        symmetric_key(settings.notification_secrets_key, settings.notification_secrets_key_file)
    )
    deliveries = Deliveries(runtime.db, config, queue, channels, templating, secrets)
    intake = Intake(runtime.db, config, queue, erased, show=deliveries.handle_batch)
    for source in SOURCES:
        runtime.consume_batches(storage.inbox_table, source, erased.skipping_batches(intake.on_events))
    runtime.consume(storage.inbox_table, PROFILE_CHANGES, erased.skipping(intake.on_profile))
    runtime.consume(storage.inbox_table, DELETIONS, erasing(storage.metadata, erased=erased))
    runtime.purger.keep(storage.erased_users, "erased_at", settings.retention.inbox_window)
    dead_letters = DeadLetters(runtime.db, queue)

    async def work() -> None:
        await queue.work(deliveries.handle_batch)

    runtime.background += [work, Sweep(runtime.db, config, queue, intake).run]
    runtime.sampler.add(dead_letters.sample)
    servicers = [
        (
            notification_pb2_grpc.add_NotificationServiceServicer_to_server,
            NotificationServicer(
                Inbox(runtime.db),
                PreferenceCases(runtime.db, config),
                ContactPoints(runtime.db, config, providers, templating, secrets),
                config,
            ),
            SERVICE_NAME,
        ),
        (
            notification_pb2_grpc.add_NotificationCallbackServiceServicer_to_server,
            CallbackServicer(ProviderCallbacks(Receipts(runtime.db), config.providers)),
            CALLBACK_SERVICE_NAME,
        ),
        (
            notification_pb2_grpc.add_NotificationInternalServiceServicer_to_server,
            NotificationInternalServicer(dead_letters, config),
            INTERNAL_SERVICE_NAME,
        ),
    ]
    app = runtime.app(verifier, servicers)

    async def close() -> None:
        await templating.close()
        for channel in channels.values():
            await channel.aclose()

    app.on_stop.append(close)
    return app
