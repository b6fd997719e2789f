from services.kit.cli import service_main
from services.notification.commands import dlq
from services.notification.server import build_app
from services.notification.settings import NotificationMeshSettings

service_main("notification", NotificationMeshSettings, build_app, extra_commands=[dlq])
