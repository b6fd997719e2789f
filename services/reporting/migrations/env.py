from services.kit.db.migrations import run_env
from services.reporting.storage import metadata

run_env(metadata)
