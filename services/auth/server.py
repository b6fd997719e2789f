"""Wiring of the auth service."""

from __future__ import annotations

from expense.auth.v1 import auth_pb2_grpc
from services.auth import storage
from services.auth.api import AuthApi, IdentityApi, ServiceTokenApi
from services.auth.passwords import Passwords
from services.auth.recovery import Recovery
from services.auth.service_identity import ServiceTokenIssuer
from services.auth.settings import AuthMeshSettings
from services.auth.throttle import LoginThrottle, SignupThrottle
from services.auth.tokens import AccessTokens, SigningKeys
from services.auth.usecases import Accounts
from services.kit.db.unit_of_work import UnitsOfWork
from services.kit.grpc.server import ServiceApp
from services.kit.identity.revocation import SessionFeed
from services.kit.identity.tokens import TokenVerifier
from services.kit.runtime import Runtime


def build_app(settings: AuthMeshSettings) -> ServiceApp:
    runtime = Runtime("auth", settings)
    keys = SigningKeys(settings)
    passwords = Passwords(settings.auth)
    session_feed = SessionFeed(runtime.bus, settings.jwt.session_push_heartbeat_seconds)
    units = UnitsOfWork(runtime.db, runtime.outbox(storage.outbox))
    accounts = Accounts(
        settings,
        units,
        runtime.cache,
        passwords,
        LoginThrottle(runtime.cache, settings.auth),
        SignupThrottle(runtime.cache, settings.auth),
        AccessTokens(settings.jwt, keys),
        session_feed,
    )
    # The auth service verifies its own tokens without calling itself: keys from its
    # own ring, session checks straight against its database (and cache). It hears
    # ended sessions on the bus like every service, those of other replicas too.
    verifier = TokenVerifier(settings.jwt, keys.jwks, accounts.check_session, session_feed)
    recovery = Recovery(settings.auth, units, runtime.cache, passwords, accounts.forget_sessions)

    async def signing_keys_loaded() -> bool:
        if not keys.ready:
            await keys.load()
        if not verifier.ready:
            await verifier.refresh_keys(force=True)
        return verifier.ready

    runtime.readiness["signing_keys"] = signing_keys_loaded
    runtime.background.append(accounts.purge_forever)
    runtime.background.append(session_feed.heartbeat_forever)
    runtime.background.append(recovery.issue_resets_forever)

    async def prune_secret_outbox() -> None:
        await recovery.prune_secret_outbox_forever(settings.event_prefix)

    runtime.background.append(prune_secret_outbox)
    app = runtime.app(
        verifier,
        [
            (
                auth_pb2_grpc.add_AuthServiceServicer_to_server,
                AuthApi(accounts, recovery, keys, verifier),
                "expense.auth.v1.AuthService",
            ),
            (
                auth_pb2_grpc.add_IdentityServiceServicer_to_server,
                IdentityApi(accounts),
                "expense.auth.v1.IdentityService",
            ),
            (
                auth_pb2_grpc.add_ServiceTokenServiceServicer_to_server,
                ServiceTokenApi(ServiceTokenIssuer(settings, keys)),
                "expense.auth.v1.ServiceTokenService",
            ),
        ],
    )
    app.on_start.append(passwords.warm_up)

    async def close_passwords() -> None:
        passwords.close()

    app.on_stop.append(close_passwords)
    return app
