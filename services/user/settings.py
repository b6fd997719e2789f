"""The user service's settings: its [user] section of config/mesh.toml (EM_USER__* in the
environment) beside the kit's. The reporting service reads the same section for the
preferences of users it has not heard of yet."""

from __future__ import annotations

from pydantic import BaseModel

from services.kit.config.settings import MeshSettings


class ProfileDefaults(BaseModel):
    """Preferences a new user starts with (validated by the user service at start)."""

    default_currency: str = "INR"
    time_zone: str = "UTC"
    locale: str = "en"
    first_day_of_week: str = "monday"
    notification_channels: list[str] = ["email"]
    sms_auto_import: bool = False


class UserSettings(BaseModel):
    # The notification channels a profile may choose from.
    notification_channels: list[str] = ["email", "sms", "whatsapp", "push"]
    defaults: ProfileDefaults = ProfileDefaults()


class UserMeshSettings(MeshSettings):
    """What the user service reads: the kit's settings and its own section."""

    user: UserSettings = UserSettings()
