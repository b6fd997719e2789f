"""Wiring of the user service: use cases, servicer, signup-event consumer, outbox relay."""

from __future__ import annotations

from expense.events.v1 import events_pb2
from expense.user.v1 import user_pb2_grpc
from services.kit.db.erasure import ErasedUsers, erasing
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.events.subscription import Subscription
from services.kit.grpc.server import ServiceApp
from services.kit.runtime import Runtime
from services.user import storage
from services.user.accounts import AccountDirectory
from services.user.api import SERVICE_NAME, UserServicer
from services.user.domain import ProfileRules
from services.user.portability import DataExport, Peers
from services.user.settings import UserMeshSettings
from services.user.usecases import ProfileProvisioner, Profiles

SIGNUPS = Subscription("user_profiles", (events_pb2.UserRegistered,))
DELETIONS = Subscription("user_erasure", (events_pb2.UserDeleted,))
# Every consumer the wiring starts; docs/events.md lists them.
SUBSCRIPTIONS = (SIGNUPS, DELETIONS)


def build_app(settings: UserMeshSettings) -> ServiceApp:
    runtime = Runtime("user", settings)
    verifier = runtime.remote_verifier()
    rules = ProfileRules(tuple(settings.user.notification_channels), settings.user.defaults)
    units = UnitsOfWork(runtime.db, runtime.outbox(storage.outbox))
    accounts = AccountDirectory(
        settings.service_address("auth"),
        settings.internal_call_timeout_seconds,
        runtime.service_tokens(),
        settings.resilience,
    )
    provisioner = ProfileProvisioner(units, rules, accounts)
    # Auth's signup of a user erased meanwhile is skipped (redelivered after user.deleted,
    # it would create the profile again); the record lasts as long as such events may come.
    erased = ErasedUsers(storage.erased_users)
    runtime.consume(storage.inbox, SIGNUPS, erased.skipping(provisioner.on_user_registered))
    runtime.consume(storage.inbox, DELETIONS, erasing(storage.metadata, erased=erased))
    runtime.purger.keep(storage.erased_users, "erased_at", settings.retention.inbox_window)
    peers = Peers.of(settings, settings.internal_call_timeout_seconds)
    export = DataExport(peers, accounts, settings.internal_call_timeout_seconds)
    servicer = UserServicer(Profiles(units, rules, provisioner), export)
    app = runtime.app(verifier, [(user_pb2_grpc.add_UserServiceServicer_to_server, servicer, SERVICE_NAME)])
    app.on_stop.append(accounts.close)
    app.on_stop.append(peers.close)
    return app
