"""UserService: the caller's profile over gRPC (REST through the gateways), proto to
domain and back; the work is in usecases.py. The user id comes only from the
verified token, never from the request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf.message import Message
from typing_extensions import override

from expense.user.v1 import user_pb2, user_pb2_grpc
from services.kit.domain.timestamps import rfc3339
from services.kit.identity.tokens import current_identity
from services.user.domain import UPDATABLE_PATHS, Profile, update_paths
from services.user.portability import DataExport
from services.user.usecases import Profiles

SERVICE_NAME = "expense.user.v1.UserService"
EXPORT_CONTENT_TYPE = "application/json; charset=utf-8"
EXPORT_FILENAME = "expense-mesh-export.json"
LIST_PATHS = ("notifications.channels", "sms_allowed_senders")


class UserServicer(user_pb2_grpc.UserServiceServicer):
    def __init__(self, profiles: Profiles, export: DataExport) -> None:
        self.profiles = profiles
        self.export = export

    @override
    async def GetProfile(self, request: user_pb2.GetProfileRequest, context: object) -> user_pb2.Profile:
        return to_proto(await self.profiles.get(current_identity().user_id))

    @override
    async def UpdateProfile(
        self, request: user_pb2.UpdateProfileRequest, context: object
    ) -> user_pb2.Profile:
        user_id = current_identity().user_id
        return to_proto(await self.profiles.update(user_id, requested_changes(request)))

    @override
    async def ExportMyData(
        self, request: user_pb2.ExportMyDataRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        """A JSON download, one chunk per part or page as the peers answer."""
        identity = current_identity()
        profile = to_proto(await self.profiles.get(identity.user_id))
        await context.send_initial_metadata(
            (("content-disposition", f'attachment; filename="{EXPORT_FILENAME}"'),)
        )
        async for chunk in self.export.chunks(identity, profile):
            yield httpbody_pb2.HttpBody(content_type=EXPORT_CONTENT_TYPE, data=chunk.encode())


def requested_changes(request: user_pb2.UpdateProfileRequest) -> dict[str, Any]:
    """{leaf path: requested value} for the paths the update names (not yet validated)."""
    paths = update_paths(request.update_mask, populated_paths(request.profile))
    return {path: _value_at(request.profile, path) for path in paths}


def populated_paths(profile: user_pb2.Profile) -> list[str]:
    """Updatable leaf paths holding a non-default value (proto3 has no presence for scalars)."""
    return [path for path in UPDATABLE_PATHS if _value_at(profile, path)]


def _value_at(message: Message, path: str) -> Any:
    value: Any = message
    for name in path.split("."):
        value = getattr(value, name)
    return list(value) if path in LIST_PATHS else value


def to_proto(profile: Profile) -> user_pb2.Profile:
    notifications = profile.notifications
    return user_pb2.Profile(
        user_id=profile.user_id,
        email=profile.email,
        display_name=profile.display_name,
        default_currency=profile.default_currency,
        time_zone=profile.time_zone,
        locale=profile.locale,
        first_day_of_week=profile.first_day_of_week,
        notifications=user_pb2.NotificationSettings(
            channels=notifications.channels,
            quiet_hours_start=notifications.quiet_hours_start,
            quiet_hours_end=notifications.quiet_hours_end,
        ),
        sms_auto_import=profile.sms_auto_import,
        sms_allowed_senders=profile.sms_allowed_senders,
        create_time=rfc3339(profile.create_time),
        update_time=rfc3339(profile.update_time),
    )
