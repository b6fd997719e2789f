"""Typed settings: defaults in config/mesh.toml, overridden by an optional
config file (EM_CONFIG_FILE) and by environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_FILE = REPO_ROOT / "config" / "mesh.toml"


class Ports(BaseModel):
    auth: int = 50051
    user: int = 50052
    ledger: int = 50053
    reporting: int = 50054
    echo: int = 50099


class JwtSettings(BaseModel):
    issuer: str = "expense-mesh-auth"
    audience: str = "expense-mesh"
    access_ttl_seconds: int = Field(900, ge=60, le=3600)
    refresh_ttl_days: int = Field(30, ge=1, le=365)
    session_check_cache_seconds: float = Field(0.5, ge=0, le=1)


class Limits(BaseModel):
    default_deadline_seconds: float = 5.0
    max_message_bytes: int = 1 << 20
    gateway_max_body_bytes: int = 1 << 20
    gateway_rate_limit_per_second: int = 2000


class OutboxSettings(BaseModel):
    poll_interval_seconds: float = 1.0
    replay_window_hours: int = 72
    batch_size: int = 200


class MeshLayout(BaseModel):
    services: list[str] = ["auth", "user", "ledger", "reporting"]
    public_methods: list[str] = []


class MeshSettings(BaseSettings):
    """Settings shared by the launcher and every service."""

    model_config = SettingsConfigDict(
        env_prefix="EM_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )
    config_file: ClassVar[Path | None] = None

    data_dir: Path = Path(".expense-mesh")
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    envoy_admin_port: int = 9901
    embedded_nats_port: int = 4250
    event_prefix: str = Field("em", pattern=r"^[a-z][a-z0-9_]{0,30}$")
    database_url: str | None = Field(None, validation_alias=AliasChoices("EM_DATABASE_URL", "DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=AliasChoices("EM_REDIS_URL", "REDIS_URL"))
    nats_url: str | None = Field(None, validation_alias=AliasChoices("EM_NATS_URL", "NATS_URL"))
    log_level: str = "INFO"
    ports: Ports = Ports()
    jwt: JwtSettings = JwtSettings()
    limits: Limits = Limits()
    outbox: OutboxSettings = OutboxSettings()
    mesh: MeshLayout = MeshLayout()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [DEFAULT_CONFIG_FILE]
        extra = os.environ.get("EM_CONFIG_FILE")
        if extra:
            files.append(Path(extra))
        # Later files win; the environment wins over every file.
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=files, deep_merge=True),
        )

    @property
    def resolved_nats_url(self) -> str:
        return self.nats_url or f"nats://{self.host}:{self.embedded_nats_port}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    def service_port(self, service: str) -> int:
        return int(getattr(self.ports, service))

    def service_address(self, service: str) -> str:
        return f"{self.host}:{self.service_port(service)}"

    def database_url_for(self, service: str) -> str:
        """Each service owns its data: a SQLite file of its own by default, or a
        PostgreSQL schema of its own (named after the service) in DATABASE_URL."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.sqlite3').resolve()}"


@lru_cache(maxsize=1)
def load_settings() -> MeshSettings:
    return MeshSettings()


def settings_dump(settings: MeshSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")
