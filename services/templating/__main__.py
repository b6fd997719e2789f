from services.kit.cli import service_main
from services.templating.server import build_app
from services.templating.settings import TemplatingMeshSettings

service_main("templating", TemplatingMeshSettings, build_app)
