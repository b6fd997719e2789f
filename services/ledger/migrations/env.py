from services.kit.migrations import run_env
from services.ledger.storage import metadata

run_env(metadata)
