from services.kit.db.migrations import run_env
from services.templating.storage import metadata

run_env(metadata)
