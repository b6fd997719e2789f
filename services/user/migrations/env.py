from services.kit.db.migrations import run_env
from services.user.storage import metadata

run_env(metadata)
