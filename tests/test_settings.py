"""Each service's section of the settings (services/<name>/settings.py): read from
config/mesh.toml like the kit's, overridden by EM_<NAME>__* variables, validated with
the field named; the kit's own settings know no service's section."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.auth.settings import AuthMeshSettings
from services.kit.config.settings import MeshSettings
from services.ledger.settings import LedgerMeshSettings
from services.reporting.settings import ReportingMeshSettings
from services.user.settings import UserMeshSettings


def test_service_sections_come_from_the_config_file() -> None:
    assert LedgerMeshSettings().ledger.max_amount == Decimal("10000000000")
    assert LedgerMeshSettings().ledger.create_batching.linger_ms == 5
    assert UserMeshSettings().user.notification_channels == ["email", "sms", "whatsapp", "push"]
    assert ReportingMeshSettings().user.defaults.default_currency == "INR"


def test_the_environment_overrides_a_service_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EM_LEDGER__MAX_IMPORT_ROWS", "5")
    monkeypatch.setenv("EM_LEDGER__CREATE_BATCHING__LINGER_MS", "2")
    monkeypatch.setenv("EM_AUTH__PASSWORD_MIN_SCORE", "0")
    monkeypatch.setenv("EM_USER__DEFAULTS__DEFAULT_CURRENCY", "JPY")
    monkeypatch.setenv("EM_PORTS__LEDGER", "6001")
    ledger = LedgerMeshSettings()
    assert (ledger.ledger.max_import_rows, ledger.ledger.create_batching.linger_ms) == (5, 2)
    assert ledger.service_port("ledger") == 6001 and ledger.service_port("auth") == 50051
    assert AuthMeshSettings().auth.password_min_score == 0
    assert ReportingMeshSettings().user.defaults.default_currency == "JPY"


def test_an_invalid_section_names_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EM_LEDGER__MAX_IMPORT_ROWS", "0")
    with pytest.raises(ValidationError) as failure:
        LedgerMeshSettings()
    assert [error["loc"] for error in failure.value.errors()] == [("ledger", "max_import_rows")]
    # Other services do not read the ledger's section.
    assert AuthMeshSettings().auth.password_min_score == 2


def test_the_kit_settings_hold_no_service_section() -> None:
    settings = MeshSettings()
    services = {"auth", "user", "ledger", "reporting", "billing", "templating", "ds", "notification"}
    assert not services & set(MeshSettings.model_fields)
    assert settings.mesh.services == [
        "auth",
        "user",
        "ledger",
        "reporting",
        "billing",
        "templating",
        "ds",
        "notification",
    ]
    with pytest.raises(ValueError, match="no port for service 'payroll'"):
        settings.service_port("payroll")


def test_the_page_token_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LedgerMeshSettings().page_token_key is None
    monkeypatch.setenv("EM_PAGE_TOKEN_KEY", "k" * 43)
    key = LedgerMeshSettings().page_token_key
    assert key is not None and key.get_secret_value() == "k" * 43 and "k" not in repr(key)
    monkeypatch.setenv("EM_PAGE_TOKEN_KEY", "too short")
    with pytest.raises(ValidationError) as failure:
        LedgerMeshSettings()
    assert [error["loc"] for error in failure.value.errors()] == [("page_token_key",)]
