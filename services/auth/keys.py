"""Signing keys of the auth service: generated on first run into the data dir
(never in the repo), rotated on demand; the JWKS lists the current and the
previous key so tokens signed just before a rotation still verify."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.kit.config.settings import MeshSettings

ALGORITHM = "RS256"
KEYS_KEPT = 2


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @property
    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
            "n": _b64_uint(numbers.n),
            "e": _b64_uint(numbers.e),
        }

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )


@dataclass(frozen=True)
class KeyRing:
    """Newest key first; the first one signs, all of them verify."""

    keys: tuple[SigningKey, ...]

    @property
    def current(self) -> SigningKey:
        return self.keys[0]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.public_jwk for key in self.keys]}


def _b64_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _thumbprint_kid(key: rsa.RSAPrivateKey) -> str:
    """RFC 7638 thumbprint: a stable, content-derived key id."""
    numbers = key.public_key().public_numbers()
    canonical = json.dumps(
        {"e": _b64_uint(numbers.e), "kty": "RSA", "n": _b64_uint(numbers.n)}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()[:16]


def _key_files(keys_dir: Path) -> list[Path]:
    # Names start with a sortable creation counter, so newest-first is a reverse sort.
    return sorted(keys_dir.glob("signing-*.pem"), reverse=True)


def _write_private_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def load_key_ring(settings: MeshSettings) -> KeyRing:
    keys = []
    for path in _key_files(settings.keys_dir)[:KEYS_KEPT]:
        private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(private_key, rsa.RSAPrivateKey)
        keys.append(SigningKey(_thumbprint_kid(private_key), private_key))
    if not keys:
        raise FileNotFoundError(f"no signing keys in {settings.keys_dir}")
    return KeyRing(tuple(keys))


def rotate_signing_key(settings: MeshSettings) -> KeyRing:
    keys_dir = settings.keys_dir
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    existing = _key_files(keys_dir)
    serial = int(existing[0].stem.split("-")[1]) + 1 if existing else 1
    _write_private_key(keys_dir / f"signing-{serial:06d}.pem", rsa.generate_private_key(65537, 2048))
    for stale in _key_files(keys_dir)[KEYS_KEPT:]:
        stale.unlink()
    ring = load_key_ring(settings)
    write_jwks(settings, ring)
    return ring


def write_jwks(settings: MeshSettings, ring: KeyRing) -> Path:
    """Public keys for the gateway (Envoy local_jwks) — safe to share."""
    path = settings.keys_dir / "jwks.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ring.jwks(), indent=2))
    tmp.replace(path)
    return path


def ensure_signing_keys(settings: MeshSettings) -> KeyRing:
    """Loads the key ring, generating the first key on first run."""
    if not _key_files(settings.keys_dir):
        return rotate_signing_key(settings)
    ring = load_key_ring(settings)
    write_jwks(settings, ring)
    return ring
