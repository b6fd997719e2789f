from services.kit.cli import service_main
from services.ledger.server import build_app

service_main("ledger", build_app)
