from services.auth.storage import metadata
from services.kit.migrations import run_env

run_env(metadata)
