from services.kit.migrations import run_env
from services.reporting.storage import metadata

run_env(metadata)
