from services.kit.cli import service_main
from services.user.server import build_app

service_main("user", build_app)
