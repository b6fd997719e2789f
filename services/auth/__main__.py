from services.auth.server import build_app
from services.kit.cli import service_main

service_main("auth", build_app)
