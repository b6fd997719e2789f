"""Wiring of the user service: use cases, servicer, signup-event consumer, outbox relay."""

from __future__ import annotations

from expense.user.v1 import user_pb2_grpc
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.grpc.server import ServiceApp
from services.kit.runtime import Runtime
from services.user import storage
from services.user.accounts import AccountDirectory
from services.user.api import SERVICE_NAME, UserServicer
from services.user.domain import ProfileRules
from services.user.settings import UserMeshSettings
from services.user.usecases import ProfileProvisioner, Profiles


def build_app(settings: UserMeshSettings) -> ServiceApp:
    runtime = Runtime("user", settings)
    verifier = runtime.remote_verifier()
    rules = ProfileRules(tuple(settings.user.notification_channels), settings.user.defaults)
    units = UnitsOfWork(runtime.db, runtime.outbox(storage.outbox))
    accounts = AccountDirectory(settings.service_address("auth"), settings.internal_call_timeout_seconds)
    provisioner = ProfileProvisioner(units, rules, accounts)
    runtime.consume(storage.inbox, "user_profiles", "user.registered", provisioner.on_user_registered)
    servicer = UserServicer(Profiles(units, rules, provisioner))
    app = runtime.app(verifier, [(user_pb2_grpc.add_UserServiceServicer_to_server, servicer, SERVICE_NAME)])
    app.on_stop.append(accounts.close)
    return app
