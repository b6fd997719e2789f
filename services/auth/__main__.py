from services.auth.commands import operator_token
from services.auth.server import build_app
from services.auth.settings import AuthMeshSettings
from services.kit.cli import service_main

service_main("auth", AuthMeshSettings, build_app, [operator_token])
