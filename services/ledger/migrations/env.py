from services.kit.db.migrations import run_env
from services.ledger.storage import metadata

run_env(metadata)
