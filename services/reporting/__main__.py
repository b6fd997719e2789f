from services.kit.cli import service_main
from services.reporting.commands import export, rebuild
from services.reporting.server import build_app

service_main("reporting", build_app, extra_commands=[rebuild, export])
