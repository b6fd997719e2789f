from services.kit.cli import service_main
from services.reporting.commands import export, rebuild
from services.reporting.server import build_app
from services.reporting.settings import ReportingMeshSettings

service_main("reporting", ReportingMeshSettings, build_app, extra_commands=[rebuild, export])
