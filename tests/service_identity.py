"""Credentials for the suite's calls to mesh-internal RPCs: an operator token signed
with a data dir's auth keys (what `python -m services.auth operator-token` prints), or a
mesh service's own token obtained from auth with its credential file."""

from __future__ import annotations

from pathlib import Path

from services.auth.keys import load_key_ring
from services.auth.service_identity import sign_service_token
from services.auth.settings import AuthMeshSettings
from services.kit.identity.service_tokens import Caller

# Long enough for any test module; the mesh accepts at most an hour.
TEST_TOKEN_SECONDS = 3600


def signed_token(data_dir: Path, caller: Caller, ttl_seconds: int = TEST_TOKEN_SECONDS) -> str:
    settings = AuthMeshSettings(data_dir=data_dir)
    return sign_service_token(settings.jwt, load_key_ring(settings).current, caller, ttl_seconds)


def operator_bearer(data_dir: Path, name: str = "suite") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {signed_token(data_dir, Caller('operator', name))}"),)


def credential_of(data_dir: Path, service: str) -> str:
    """A service's credential as the embedded default generated it."""
    return (data_dir / "keys" / f"service-{service}.key").read_text().strip()
