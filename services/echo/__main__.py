from services.echo.server import build_app
from services.kit.cli import service_main
from services.kit.config.settings import MeshSettings

service_main("echo", MeshSettings, build_app)
