from services.kit.cli import service_main
from services.ledger.server import build_app
from services.ledger.settings import LedgerMeshSettings

service_main("ledger", LedgerMeshSettings, build_app)
