"""gRPC servicers of the auth service: requests validated and turned into use-case calls
(usecases.py), their results into protos."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Annotated

from grpc.aio import ServicerContext
from pydantic import AfterValidator, BaseModel

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.domain import (
    PASSWORD_MAX_LENGTH,
    USER_AGENT_MAX_LENGTH,
    Account,
    ClientInfo,
    IssuedTokens,
    normalise_display_name,
    normalise_email,
    password_length_problem,
    person_user_agent,
)
from services.auth.recovery import Recovery
from services.auth.service_identity import ServiceTokenIssuer
from services.auth.tokens import SigningKeys
from services.auth.usecases import Accounts
from services.kit.domain.errors import InvalidArgument
from services.kit.domain.timestamps import rfc3339
from services.kit.domain.validation import validated
from services.kit.identity.tokens import TokenVerifier, current_identity

UNKNOWN_IP = "unknown"


def _required(value: str) -> str:
    if not value:
        raise ValueError("is required")
    return value


def _new_password(value: str) -> str:
    problem = password_length_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _login_password(value: str) -> str:
    _required(value)
    if len(value) > PASSWORD_MAX_LENGTH:
        raise ValueError(f"must be at most {PASSWORD_MAX_LENGTH} characters")
    return value


Email = Annotated[str, AfterValidator(normalise_email)]
DisplayName = Annotated[str, AfterValidator(normalise_display_name)]
NewPassword = Annotated[str, AfterValidator(_new_password)]
LoginPassword = Annotated[str, AfterValidator(_login_password)]
Required = Annotated[str, AfterValidator(_required)]


class SignUpInput(BaseModel):
    email: Email
    password: NewPassword
    display_name: DisplayName


class LogInInput(BaseModel):
    email: Email
    password: LoginPassword


class ChangePasswordInput(BaseModel):
    current_password: LoginPassword
    new_password: NewPassword


class ResetRequestInput(BaseModel):
    email: Email


class ResetPasswordInput(BaseModel):
    token: Required
    new_password: NewPassword


class DeleteAccountInput(BaseModel):
    password: LoginPassword


def client_ip(metadata: Iterable[tuple[str, str | bytes]], peer: str) -> str:
    """The client's address: Envoy's x-envoy-external-address (set from the TCP peer
    when use_remote_address is on), else the last x-forwarded-for hop (the address the
    nearest proxy saw), else the gRPC peer. Only the gateways reach the service ports."""
    headers = {key: value for key, value in metadata if isinstance(value, str)}
    candidates = [
        headers.get("x-envoy-external-address", ""),
        headers.get("x-forwarded-for", "").split(",")[-1],
        _peer_host(peer),
    ]
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate.strip()))
        except ValueError:
            continue
    return UNKNOWN_IP


def _peer_host(peer: str) -> str:
    """'ipv4:127.0.0.1:5000' -> '127.0.0.1'; 'ipv6:[::1]:5000' -> '::1'."""
    scheme, _, address = peer.partition(":")
    if scheme == "ipv6":
        return address.rpartition("]")[0].lstrip("[")
    if scheme == "ipv4":
        return address.rpartition(":")[0]
    return ""


def client_of(context: ServicerContext) -> ClientInfo:
    metadata = context.invocation_metadata() or ()
    user_agent = next((v for k, v in metadata if k == "user-agent" and isinstance(v, str)), "")
    return ClientInfo(
        ip_address=client_ip(metadata, context.peer() or ""),
        user_agent=person_user_agent(user_agent)[:USER_AGENT_MAX_LENGTH],
    )


def _user(account: Account) -> auth_pb2.AuthUser:
    return auth_pb2.AuthUser(
        user_id=account.user_id,
        email=account.email,
        display_name=account.display_name,
        email_verified=account.email_verified,
    )


def _bearer_token(context: ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def _auth_tokens(tokens: IssuedTokens) -> auth_pb2.AuthTokens:
    return auth_pb2.AuthTokens(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_type="Bearer",
        expires_in=tokens.expires_in,
        user=_user(tokens.account),
        session_id=tokens.session_id,
    )


def _require(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument.of(field, "is required")
    return value


class AuthApi(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self, accounts: Accounts, recovery: Recovery, keys: SigningKeys, verifier: TokenVerifier
    ) -> None:
        self.accounts = accounts
        self.recovery = recovery
        self.keys = keys
        # LogOut is public (a refresh token suffices) but also takes an access token alone.
        self.verifier = verifier

    async def SignUp(self, request: auth_pb2.SignUpRequest, context: ServicerContext) -> auth_pb2.AuthTokens:
        data = validated(
            SignUpInput,
            {"email": request.email, "password": request.password, "display_name": request.display_name},
        )
        tokens = await self.accounts.sign_up(data.email, data.password, data.display_name, client_of(context))
        return _auth_tokens(tokens)

    async def LogIn(self, request: auth_pb2.LogInRequest, context: ServicerContext) -> auth_pb2.AuthTokens:
        data = validated(LogInInput, {"email": request.email, "password": request.password})
        return _auth_tokens(await self.accounts.log_in(data.email, data.password, client_of(context)))

    async def RefreshToken(
        self, request: auth_pb2.RefreshTokenRequest, context: ServicerContext
    ) -> auth_pb2.AuthTokens:
        token = _require("refresh_token", request.refresh_token)
        return _auth_tokens(await self.accounts.refresh(token))

    async def LogOut(
        self, request: auth_pb2.LogOutRequest, context: ServicerContext
    ) -> auth_pb2.LogOutResponse:
        if request.refresh_token:
            revoked = await self.accounts.log_out(request.refresh_token, request.all_sessions)
            return auth_pb2.LogOutResponse(revoked_sessions=revoked)
        access_token = _bearer_token(context)
        if not access_token:
            raise InvalidArgument.of("refresh_token", "is required without an access token")
        identity = await self.verifier.verify(access_token)
        revoked = await self.accounts.log_out_session(identity, request.all_sessions, client_of(context))
        return auth_pb2.LogOutResponse(revoked_sessions=revoked)

    async def ChangePassword(
        self, request: auth_pb2.ChangePasswordRequest, context: ServicerContext
    ) -> auth_pb2.ChangePasswordResponse:
        data = validated(
            ChangePasswordInput,
            {"current_password": request.current_password, "new_password": request.new_password},
        )
        revoked = await self.accounts.change_password(
            current_identity(), data.current_password, data.new_password, client_of(context)
        )
        return auth_pb2.ChangePasswordResponse(revoked_sessions=revoked)

    async def ListSessions(
        self, request: auth_pb2.ListSessionsRequest, context: ServicerContext
    ) -> auth_pb2.ListSessionsResponse:
        identity = current_identity()
        records = await self.accounts.list_sessions(identity)
        return auth_pb2.ListSessionsResponse(
            sessions=[
                auth_pb2.Session(
                    session_id=record.session_id,
                    create_time=rfc3339(record.created_at),
                    last_used_time=rfc3339(record.last_used_at),
                    user_agent=record.user_agent,
                    ip_address=record.ip_address,
                    current=record.session_id == identity.session_id,
                )
                for record in records
            ]
        )

    async def DeleteSession(
        self, request: auth_pb2.DeleteSessionRequest, context: ServicerContext
    ) -> auth_pb2.DeleteSessionResponse:
        session_id = _require("session_id", request.session_id)
        await self.accounts.delete_session(current_identity(), session_id)
        return auth_pb2.DeleteSessionResponse()

    async def RequestPasswordReset(
        self, request: auth_pb2.RequestPasswordResetRequest, context: ServicerContext
    ) -> auth_pb2.RequestPasswordResetResponse:
        data = validated(ResetRequestInput, {"email": request.email})
        await self.recovery.request_password_reset(data.email, client_of(context).ip_address)
        return auth_pb2.RequestPasswordResetResponse()

    async def ResetPassword(
        self, request: auth_pb2.ResetPasswordRequest, context: ServicerContext
    ) -> auth_pb2.ResetPasswordResponse:
        data = validated(ResetPasswordInput, {"token": request.token, "new_password": request.new_password})
        revoked = await self.recovery.reset_password(data.token, data.new_password)
        return auth_pb2.ResetPasswordResponse(revoked_sessions=revoked)

    async def VerifyEmail(
        self, request: auth_pb2.VerifyEmailRequest, context: ServicerContext
    ) -> auth_pb2.VerifyEmailResponse:
        account = await self.recovery.verify_email(_require("token", request.token))
        return auth_pb2.VerifyEmailResponse(email=account.email)

    async def ResendEmailVerification(
        self, request: auth_pb2.ResendEmailVerificationRequest, context: ServicerContext
    ) -> auth_pb2.ResendEmailVerificationResponse:
        await self.recovery.resend_verification(current_identity())
        return auth_pb2.ResendEmailVerificationResponse()

    async def DeleteAccount(
        self, request: auth_pb2.DeleteAccountRequest, context: ServicerContext
    ) -> auth_pb2.DeleteAccountResponse:
        data = validated(DeleteAccountInput, {"password": request.password})
        await self.accounts.delete_account(current_identity(), data.password, client_of(context))
        return auth_pb2.DeleteAccountResponse()

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: ServicerContext
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**jwk) for jwk in self.keys.ring.jwks()["keys"]])


class IdentityApi(auth_pb2_grpc.IdentityServiceServicer):
    """Mesh-internal: session checks and account look-ups for the other services."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    async def CheckSession(
        self, request: auth_pb2.CheckSessionRequest, context: ServicerContext
    ) -> auth_pb2.CheckSessionResponse:
        active = await self.accounts.check_session(request.session_id, request.user_id)
        return auth_pb2.CheckSessionResponse(active=active)

    async def GetAccount(
        self, request: auth_pb2.GetAccountRequest, context: ServicerContext
    ) -> auth_pb2.AuthUser:
        user_id = _require("user_id", request.user_id)
        return _user(await self.accounts.get_account(user_id))


class ServiceTokenApi(auth_pb2_grpc.ServiceTokenServiceServicer):
    """Open to every caller: the service credential in the request is the proof."""

    def __init__(self, issuer: ServiceTokenIssuer) -> None:
        self.issuer = issuer

    async def IssueServiceToken(
        self, request: auth_pb2.IssueServiceTokenRequest, context: ServicerContext
    ) -> auth_pb2.ServiceToken:
        token = self.issuer.issue(_require("service", request.service), request.credential)
        return auth_pb2.ServiceToken(token=token, expires_in=self.issuer.ttl_seconds)
