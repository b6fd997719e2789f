"""Webhook signing secrets at rest. The worker needs each secret in clear to sign (Standard
Webhooks is HMAC), so it is encrypted rather than hashed: Fernet (AES-128-CBC with
HMAC-SHA256) under a key derived from notification's secrets key, which the environment
gives (EM_NOTIFICATION_SECRETS_KEY, shared by every replica) or the first run generates
into the keys directory (services/kit/config/secrets.py). A database dump alone then
signs nothing."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Marks a sealed value; a secret stored before sealing existed has no such prefix.
SEALED = "fernet:"
KEY_PURPOSE = b"expense-mesh notification webhook secrets"


class SecretBox:
    def __init__(self, key: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_PURPOSE).derive(key)
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, secret: str) -> str:
        return SEALED + self._fernet.encrypt(secret.encode()).decode()

    def reveal(self, stored: str) -> str:
        """The secret in clear; a value stored before sealing (no prefix) is already clear.
        cryptography.fernet.InvalidToken when another key sealed it."""
        if not stored.startswith(SEALED):
            return stored
        return self._fernet.decrypt(stored[len(SEALED) :].encode()).decode()
