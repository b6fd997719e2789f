from services.echo.server import build_app
from services.kit.cli import service_main

service_main("echo", build_app)
