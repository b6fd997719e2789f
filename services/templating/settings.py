"""The templating service's settings: its [templating] section of config/mesh.toml
(EM_TEMPLATING__* in the environment) beside the kit's. The render caps live here."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.kit.config.settings import MeshSettings


class SmsSettings(BaseModel):
    # Replace the characters below when that makes a body GSM-7 (fewer, cheaper segments).
    gsm7_safe: bool = True
    replacements: dict[str, str] = {"₹": "Rs.", "‘": "'", "’": "'", "“": '"', "”": '"'}


class TemplatingSettings(BaseModel):
    templates_dir: str = "config/templates"
    default_locale: str = "en"
    # Caps of one render: the result, everything emitted on the way, loop steps, time.
    max_output_bytes: int = Field(16384, ge=256, le=1048576)
    max_work_bytes: int = Field(131072, ge=256, le=16777216)
    max_loop_iterations: int = Field(10000, ge=10, le=1000000)
    max_render_ms: int = Field(250, ge=10, le=10000)
    max_source_chars: int = Field(20000, ge=100, le=200000)
    max_variables: int = Field(40, ge=1, le=200)
    render_threads: int = Field(2, ge=1, le=32)
    # Renders one BatchRender call may ask for.
    max_batch_renders: int = Field(500, ge=1, le=5000)
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(200, ge=1, le=1000)
    sms: SmsSettings = SmsSettings()


class TemplatingMeshSettings(MeshSettings):
    templating: TemplatingSettings = TemplatingSettings()
