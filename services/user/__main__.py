from services.kit.cli import service_main
from services.user.server import build_app
from services.user.settings import UserMeshSettings

service_main("user", UserMeshSettings, build_app)
