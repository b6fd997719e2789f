from services.ds.storage import metadata
from services.kit.db.migrations import run_env

run_env(metadata)
