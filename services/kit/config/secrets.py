"""Symmetric keys of a service (HMAC keys) and NATS passwords: given by the environment,
or generated on first run into the data dir's keys directory (never in the repo). Several
replicas must share one key, so deployments set it from a Secret; a key file is for one host."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:  # settings.py imports this module
    from services.kit.config.settings import MeshSettings

# Characters of a key: a generated one is 43 (32 random bytes, URL-safe base64).
MIN_KEY_LENGTH = 32


def symmetric_key(configured: SecretStr | None, path: Path) -> bytes:
    """The configured key, else the one in path, generated (0600) by the first process
    that needs it; its text is the key, so the file's content can be set as the variable."""
    if configured is not None:
        return configured.get_secret_value().encode()
    text = _key_file(path)
    if len(text) < MIN_KEY_LENGTH:
        raise ValueError(f"{path} holds fewer than {MIN_KEY_LENGTH} characters: not a key")
    return text.encode()


def nats_password(settings: MeshSettings, user: str) -> str | None:
    """`user`'s password on the mesh's NATS: EM_NATS_PASSWORDS__<USER>, else, for the
    embedded NATS (no NATS_URL), the one generated into the keys directory. An external
    NATS without a configured password is connected to without credentials."""
    configured = settings.nats_passwords.get(user)
    if configured is not None:
        return configured.get_secret_value()
    if settings.nats_url is not None:
        return None
    return _key_file(nats_password_file(settings, user), _new_nats_password)


def nats_password_file(settings: MeshSettings, user: str) -> Path:
    return settings.keys_dir / "nats" / user


def _new_nats_password() -> str:
    return "k" + secrets.token_hex(32)


def _key_file(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    # Written whole under a private name, then linked into place: a process starting at
    # the same moment finds no file or a complete one, and the first link wins.
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(make())
    try:
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink()
    return path.read_text().strip()
