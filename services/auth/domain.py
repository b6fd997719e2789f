"""Rules of accounts, passwords, sessions and refresh tokens. Plain Python:
no gRPC, no SQL."""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

import zxcvbn
from email_validator import EmailNotValidError, validate_email

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# zxcvbn's cost grows quickly with length; a prefix is a lower bound of the whole's strength.
STRENGTH_CHECKED_PREFIX = 72
EMAIL_MAX_LENGTH = 254
DISPLAY_NAME_MAX_LENGTH = 100
USER_AGENT_MAX_LENGTH = 256
REFRESH_TOKEN_BYTES = 32  # 256 bits from the CSPRNG (ASVS 7.2.3 asks for >= 128)
STRENGTH_HINT = "add another word or two; uncommon words are better"


class RevokeReason(enum.StrEnum):
    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    PASSWORD_CHANGE = "password_change"
    REFRESH_REUSE = "refresh_reuse"
    DELETED = "deleted"
    PASSWORD_RESET = "password_reset"


class RefreshVerdict(enum.Enum):
    ROTATE = "rotate"  # the current token of a live session: issue its successor
    REUSED = "reused"  # an already-rotated token: treat as stolen, end the session
    ENDED = "ended"  # the session is over (revoked or expired)


class TokenPurpose(enum.StrEnum):
    PASSWORD_RESET = "password_reset"
    EMAIL_VERIFICATION = "email_verification"


@dataclass(frozen=True)
class Account:
    user_id: str
    email: str
    display_name: str
    email_verified: bool = False


@dataclass(frozen=True)
class OneTimeToken:
    """A password reset or email verification token (only its hash is stored)."""

    user_id: str
    purpose: TokenPurpose
    expires_at: datetime
    used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and self.expires_at > now


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    user_id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    user_agent: str
    ip_address: str

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


@dataclass(frozen=True)
class RefreshTokenRecord:
    token_hash: str
    rotated_at: datetime | None
    session: SessionRecord
    account: Account


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    account: Account
    session_id: str


@dataclass(frozen=True)
class ClientInfo:
    ip_address: str
    user_agent: str


def normalise_email(value: str) -> str:
    """Validated, with the domain IDNA-normalised and everything lowercased."""
    value = value.strip()
    if not value:
        raise ValueError("is required")
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters")
    try:
        parsed = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"is not a valid email address: {error}") from None
    return parsed.normalized.lower()


def normalise_display_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("is required")
    if len(value) > DISPLAY_NAME_MAX_LENGTH:
        raise ValueError(f"must be at most {DISPLAY_NAME_MAX_LENGTH} characters")
    if any(unicodedata.category(char).startswith("C") for char in value):
        raise ValueError("must not contain control characters")
    return value


def password_length_problem(password: str) -> str | None:
    if not password:
        return "is required"
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"must be at least {PASSWORD_MIN_LENGTH} characters"
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"must be at most {PASSWORD_MAX_LENGTH} characters"
    return None


def password_weakness(password: str, user_inputs: list[str], min_score: int) -> str | None:
    """Why a new password is refused, or None. Length first, then zxcvbn's guessability
    estimate, which knows common passwords, words, patterns and the user's own details.

    Not thread-safe (zxcvbn keeps user_inputs in a module global): call it from one thread."""
    problem = password_length_problem(password)
    if problem:
        return problem
    result = zxcvbn.zxcvbn(
        password[:STRENGTH_CHECKED_PREFIX],
        user_inputs=_personal_words(user_inputs),
        max_length=STRENGTH_CHECKED_PREFIX,
    )
    if result["score"] >= min_score:
        return None
    warning = str(result["feedback"].get("warning") or "").rstrip(".")
    reason = warning[:1].lower() + warning[1:] if warning else "it is too easy to guess"
    return f"is too easy to guess ({reason}); {STRENGTH_HINT}"


def _personal_words(user_inputs: list[str]) -> list[str]:
    """The user's details whole and word by word: zxcvbn only matches whole entries, and
    "zebulonquartermaine" should count as guessable for "Zebulon Quartermaine"."""
    words = set()
    for value in user_inputs:
        lowered = value.lower()
        words.add(lowered)
        words.update(word for word in re.split(r"\W+|_", lowered) if len(word) >= 3)
    return sorted(words)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def refresh_token_hash(token: str) -> str:
    """SHA-256 suffices (no salt, no stretching): the token has 256 bits of entropy."""
    return hashlib.sha256(token.encode()).hexdigest()


# Password reset and email verification tokens are made and stored like refresh tokens.
new_one_time_token = new_refresh_token
one_time_token_hash = refresh_token_hash
# A token as clients send it: 32 bytes in base64url are 43 characters.
ONE_TIME_TOKEN_MAX_LENGTH = 64


def link_with_token(template: str, token: str) -> str:
    """The configured link ("...?token={token}") for a URL-safe token."""
    return template.replace("{token}", token)


# What a gRPC library appends to the user agent a caller set (the dashboard's session
# endpoint sets the browser's): "... grpc-python-asyncio/1.85.1 grpc-c/58.0.0 (linux; chttp2)".
_GRPC_USER_AGENT_SUFFIX = re.compile(r"\s+grpc-[a-z-]+/\S+(?:\s+grpc-c/\S+)?(?:\s+\([^)]*\))?\s*$")


def person_user_agent(raw: str) -> str:
    """The client's own user agent, without the gRPC library's suffix, which a person
    reading "New sign-in on ..." or the sessions list should not see; a bare gRPC
    client's (grpcurl's, another service's) stays as it is."""
    if raw.startswith("grpc-"):
        return raw
    return _GRPC_USER_AGENT_SUFFIX.sub("", raw) or raw


def device_key(user_agent: str, network: str) -> str:
    """What counts as one device: the user agent as sent and the client's network (an IPv4
    /24, an IPv6 /56: throttle.client_network), hashed. A browser update or another
    network reads as a new device (a notice too many, never one too few); no cookie or
    client-held id is needed, so every client (curl, the apps) is covered alike."""
    return hashlib.sha256(f"{user_agent}\n{network}".encode()).hexdigest()


def refresh_verdict(record: RefreshTokenRecord, now: datetime) -> RefreshVerdict:
    """RFC 9700 §4.14.2 rotation with reuse detection.

    No grace period for concurrent refreshes: only hashes are stored, so a retry could
    not be given the successor that was already issued, and any window in which an
    old token is accepted (or ignored) is one in which a stolen token goes undetected.
    Clients must serialise their refreshes; two concurrent refreshes with one token end
    the session and the user logs in again."""
    if not record.session.active(now):
        return RefreshVerdict.ENDED
    if record.rotated_at is not None:
        return RefreshVerdict.REUSED
    return RefreshVerdict.ROTATE


def session_expiry(now: datetime, ttl_days: int) -> datetime:
    """Absolute lifetime (ASVS 10.4.8): refreshing never extends it."""
    return now + timedelta(days=ttl_days)
