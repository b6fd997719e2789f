"""The auth service's settings: its [auth] section of config/mesh.toml (EM_AUTH__* in the
environment) beside the kit's."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from services.kit.config.settings import MeshSettings


class AuthSettings(BaseModel):
    """Auth service policy: password hashing cost and strength, login and signup throttling."""

    # argon2id; the OWASP minimum (t=2, 19 MiB, p=1) is the floor.
    argon2_time_cost: int = Field(2, ge=2)
    argon2_memory_kib: int = Field(19456, ge=19456)
    argon2_parallelism: int = Field(1, ge=1)
    # Hashes computed at once; each holds argon2_memory_kib of RAM, so this caps memory.
    password_hash_concurrency: int = Field(4, ge=1, le=64)
    # Hashes allowed to wait for a slot; more are refused with RESOURCE_EXHAUSTED.
    password_hash_queue: int = Field(64, ge=0)
    # zxcvbn score (0-4) a new password must reach.
    password_min_score: int = Field(2, ge=0, le=4)
    # Failed logins per (email, client IP) within the window, then RESOURCE_EXHAUSTED.
    login_failures_per_account_ip: int = Field(10, ge=1)
    login_failure_window_seconds: int = Field(900, ge=1)
    # Password attempts (logins, password changes) per client IP within the window.
    login_attempts_per_ip: int = Field(30, ge=1)
    login_ip_window_seconds: int = Field(60, ge=1)
    # Signups (each an argon2 hash) per client IP and per network (/24 IPv4, /56 IPv6).
    signups_per_ip: int = Field(10, ge=1)
    signups_per_network: int = Field(30, ge=1)
    signup_window_seconds: int = Field(3600, ge=1)
    # Redis TTL of a CheckSession answer; revoking a session overwrites it at once.
    session_cache_seconds: float = Field(5.0, gt=0, le=60)
    # Password reset: a single-use token valid this long, mailed as this link ({token}).
    password_reset_ttl_minutes: int = Field(30, ge=5, le=24 * 60)
    password_reset_url: str = "https://app.example.com/reset-password?token={token}"
    # Reset requests per email (beyond: answered alike, nothing mailed: no mail bombing)
    # and per client IP (beyond: RESOURCE_EXHAUSTED), per window.
    password_resets_per_email: int = Field(3, ge=1)
    password_resets_per_ip: int = Field(20, ge=1)
    password_reset_window_seconds: int = Field(3600, ge=1)
    # Reset requests waiting for the worker; beyond that they are answered alike and dropped.
    password_reset_queue: int = Field(1000, ge=1)
    # Email verification: token lifetime, link, and resends per user per window.
    email_verification_ttl_hours: int = Field(48, ge=1, le=24 * 30)
    email_verification_url: str = "https://app.example.com/verify-email?token={token}"
    verification_resends_per_user: int = Field(5, ge=1)
    verification_resend_window_seconds: int = Field(3600, ge=1)
    # A device not signed in from for this long is forgotten (its next login is "new" again).
    device_memory_days: int = Field(180, ge=1)
    # How often published outbox rows that carry a raw token are deleted (they are
    # not kept for the replay window like other events).
    secret_outbox_prune_seconds: float = Field(5.0, gt=0, le=300)


class AuthMeshSettings(MeshSettings):
    """What the auth service reads: the kit's settings and its own section."""

    auth: AuthSettings = AuthSettings()
    # The mesh services' credentials, by service name (EM_SERVICE_CREDENTIALS__LEDGER=...,
    # each from that service's Secret). Empty: each one's <data_dir>/keys/service-<name>.key
    # (the embedded default, where every service shares the data dir).
    service_credentials: dict[str, SecretStr] = Field(default_factory=dict)
