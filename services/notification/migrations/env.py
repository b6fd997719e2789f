from services.kit.db.migrations import run_env
from services.notification.storage import metadata

run_env(metadata)
