from services.billing.commands import rebuild
from services.billing.server import build_app
from services.billing.settings import BillingMeshSettings
from services.kit.cli import service_main

service_main("billing", BillingMeshSettings, build_app, extra_commands=[rebuild])
