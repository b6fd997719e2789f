"""The ledger service's settings: its [ledger] section of config/mesh.toml (EM_LEDGER__* in
the environment) beside the kit's."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

from services.kit.config.secrets import MIN_KEY_LENGTH
from services.kit.config.settings import GroupCommitSettings, MeshSettings


class LedgerSettings(BaseModel):
    """Ledger limits: every list, text and batch a client sends is bounded."""

    # Largest amount of one expense, in major units of its currency.
    max_amount: Decimal = Field(Decimal("10000000000"), gt=0, le=Decimal("100000000000000"))
    # How far after today (UTC) spent_on may lie.
    max_future_days: int = Field(366, ge=0)
    max_tags: int = Field(10, ge=0, le=100)
    max_tag_length: int = Field(32, ge=1, le=200)
    max_merchant_length: int = Field(200, ge=1, le=2000)
    max_note_length: int = Field(1000, ge=1, le=20000)
    max_query_length: int = Field(100, ge=1, le=1000)
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(500, ge=1, le=5000)
    # total_size counts at most this many matching rows (the count reads one more to tell
    # an exact count from a capped one: total_size_capped), so its cost is bounded too.
    max_counted_rows: int = Field(1000, ge=1)
    max_import_rows: int = Field(1000, ge=1, le=10000)
    max_categories: int = Field(200, ge=1, le=10000)
    max_category_depth: int = Field(3, ge=1, le=10)
    max_category_name_length: int = Field(60, ge=1, le=200)
    # Rows per message of the internal streams used by rebuilds.
    stream_batch_size: int = Field(500, ge=1, le=5000)
    # CreateExpense calls arriving together share one transaction.
    create_batching: GroupCommitSettings = GroupCommitSettings()
    # The categories every user starts with (a data file, relative to the repo root).
    default_categories_file: Path = Path("config/default_categories.toml")
    # Bank statement CSV shapes ImportExpenses reads by name (a data file, relative to the
    # repo root; services/ledger/statements.py).
    import_mappings_file: Path = Path("config/import_mappings.toml")


class LedgerMeshSettings(MeshSettings):
    """What the ledger service reads: the kit's settings and its own section."""

    ledger: LedgerSettings = LedgerSettings()
    # Signs page tokens (EM_PAGE_TOKEN_KEY, from a Secret: every replica needs the same one).
    # Unset: a key generated on first run into <data_dir>/keys/page-token.key.
    page_token_key: SecretStr | None = Field(None, min_length=MIN_KEY_LENGTH)

    @property
    def page_token_key_file(self) -> Path:
        return self.keys_dir / "page-token.key"
