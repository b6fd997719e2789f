"""Symmetric keys and NATS passwords (services/kit/config/secrets.py): the configured
one, else a key file generated once in the keys directory, private, and shared by
every process of the data dir even when they start together."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from services.kit.config.secrets import MIN_KEY_LENGTH, nats_password, symmetric_key
from services.kit.config.settings import NATS_PASSWORD, MeshSettings


def test_a_key_is_generated_on_first_run_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "page-token.key"
    first = symmetric_key(None, path)
    assert len(first) >= MIN_KEY_LENGTH and first == path.read_text().encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert symmetric_key(None, path) == first
    assert symmetric_key(None, tmp_path / "keys" / "other.key") != first
    assert sorted(p.name for p in path.parent.iterdir()) == ["other.key", "page-token.key"]


def test_the_configured_key_wins_and_no_file_is_written(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "page-token.key"
    assert symmetric_key(SecretStr("k" * 40), path) == b"k" * 40
    assert not path.exists()


def test_processes_starting_together_get_one_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "page-token.key"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: symmetric_key(None, path), range(32)))
    assert keys == {path.read_text().encode()}
    assert [p.name for p in path.parent.iterdir()] == ["page-token.key"]


def test_a_short_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "page-token.key"
    path.write_text("short\n")
    with pytest.raises(ValueError, match="fewer than 32 characters"):
        symmetric_key(None, path)


def _settings(tmp_path: Path, **values: object) -> MeshSettings:
    return MeshSettings.model_validate({"data_dir": tmp_path, **values})


def test_nats_passwords_of_the_embedded_nats_are_generated_and_kept(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ledger = nats_password(settings, "ledger")
    assert ledger is not None and NATS_PASSWORD.match(ledger)
    assert nats_password(settings, "ledger") == ledger != nats_password(settings, "reporting")
    assert (tmp_path / "keys" / "nats" / "ledger").read_text() == ledger


def test_a_configured_nats_password_wins_and_an_external_nats_may_need_none(tmp_path: Path) -> None:
    configured = "k" + "0" * 40
    settings = _settings(tmp_path, nats_url="nats://n:4222", nats_passwords={"ledger": configured})
    assert nats_password(settings, "ledger") == configured
    assert nats_password(settings, "reporting") is None
    assert not (tmp_path / "keys").exists()


@pytest.mark.parametrize("password", ["1" * 40, "k-" + "0" * 40, "k" * 10])
def test_a_nats_password_nats_server_would_misread_is_refused(tmp_path: Path, password: str) -> None:
    with pytest.raises(ValidationError, match="letters and digits"):
        _settings(tmp_path, nats_passwords={"ledger": password})
