"""Webhook signing secrets are sealed at rest: the stored value does not hold the secret,
only the service's key opens it, and a secret stored in clear before sealing still signs."""

from __future__ import annotations

import pytest
from cryptography.fernet import InvalidToken

from services.notification.providers.webhook import generate_webhook_secret
from services.notification.secrets import SEALED, SecretBox

KEY = b"k" * 43


def test_a_sealed_secret_is_not_in_the_stored_value_and_opens_with_the_key() -> None:
    secret = generate_webhook_secret()
    stored = SecretBox(KEY).seal(secret)
    assert stored.startswith(SEALED)
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    assert SecretBox(KEY).reveal(stored) == secret


def test_sealing_twice_gives_two_values() -> None:
    box = SecretBox(KEY)
    assert box.seal("whsec_same") != box.seal("whsec_same")


def test_another_key_cannot_open_it() -> None:
    stored = SecretBox(KEY).seal(generate_webhook_secret())
    with pytest.raises(InvalidToken):
        SecretBox(b"o" * 43).reveal(stored)


def test_a_secret_stored_in_clear_before_sealing_is_read_as_it_is() -> None:
    assert SecretBox(KEY).reveal("whsec_c2VjcmV0") == "whsec_c2VjcmV0"
