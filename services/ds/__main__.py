from services.ds.commands import rebuild
from services.ds.server import build_app
from services.ds.settings import DsMeshSettings
from services.kit.cli import service_main

service_main("ds", DsMeshSettings, build_app, extra_commands=[rebuild])
