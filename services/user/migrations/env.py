from services.kit.migrations import run_env
from services.user.storage import metadata

run_env(metadata)
