"""TemplatingInternalService (mesh-internal: a service or operator token, never a
user's; config/mesh.toml lets the notification service call Render and leaves the
rest to operators): requests -> validated inputs -> one use case -> message."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf import json_format, struct_pb2
from typing_extensions import override

from expense.templating.v1 import templating_pb2, templating_pb2_grpc
from services.kit.domain.errors import DomainError, InvalidArgument
from services.kit.domain.timestamps import rfc3339
from services.kit.domain.validation import validated
from services.kit.grpc.status import status_proto
from services.templating.domain import TemplateId, TemplateVersion, VariableSpec, VersionDraft, WhatsAppSpec
from services.templating.inputs import FiltersInput, TemplateIdInput
from services.templating.settings import TemplatingSettings
from services.templating.usecases import RenderCall, Rendered, Templates, TemplateView

SERVICE_NAME = "expense.templating.v1.TemplatingInternalService"


class TemplatingServicer(templating_pb2_grpc.TemplatingInternalServiceServicer):
    def __init__(self, templates: Templates, settings: TemplatingSettings) -> None:
        self.templates = templates
        self.settings = settings

    @override
    async def Render(
        self, request: templating_pb2.RenderRequest, context: object
    ) -> templating_pb2.RenderResponse:
        template = template_id(request.key, request.channel, request.locale or self.settings.default_locale)
        rendered = await self.templates.render(
            template.key, template.channel, template.locale, struct_dict(request.variables)
        )
        return rendered_proto(rendered)

    @override
    async def BatchRender(
        self, request: templating_pb2.BatchRenderRequest, context: object
    ) -> templating_pb2.BatchRenderResponse:
        if len(request.requests) > self.settings.max_batch_renders:
            raise InvalidArgument.of("requests", f"at most {self.settings.max_batch_renders} per call")
        calls = [self._render_call(item) for item in request.requests]
        valid = [call for call in calls if isinstance(call, RenderCall)]
        rendered = iter(await self.templates.render_many(valid))
        return templating_pb2.BatchRenderResponse(
            results=[
                render_result(next(rendered) if isinstance(call, RenderCall) else call) for call in calls
            ]
        )

    def _render_call(self, request: templating_pb2.RenderRequest) -> RenderCall | DomainError:
        try:
            template = template_id(
                request.key, request.channel, request.locale or self.settings.default_locale
            )
        except InvalidArgument as error:
            return error
        return RenderCall(template.key, template.channel, template.locale, struct_dict(request.variables))

    @override
    async def Preview(
        self, request: templating_pb2.PreviewRequest, context: object
    ) -> templating_pb2.RenderResponse:
        template = template_id(request.key, request.channel, request.locale)
        version = positive(request.version, "version")
        variables = struct_dict(request.variables) if request.HasField("variables") else None
        format_locale = ""
        if request.format_locale:
            fields = {"key": template.key, "channel": template.channel, "locale": request.format_locale}
            format_locale = validated(TemplateIdInput, fields, prefix="format_").locale
        return rendered_proto(await self.templates.preview(template, version, variables, format_locale))

    @override
    async def ListTemplates(
        self, request: templating_pb2.ListTemplatesRequest, context: object
    ) -> templating_pb2.ListTemplatesResponse:
        filters = validated(
            FiltersInput, {"key": request.key, "channel": request.channel, "locale": request.locale}
        )
        if request.page_size < 0:
            raise InvalidArgument.of("page_size", "must not be negative")
        size = min(request.page_size or self.settings.default_page_size, self.settings.max_page_size)
        after = decode_page_token(request.page_token)
        views, more = await self.templates.list(
            {name: value for name, value in filters.model_dump().items() if value}, after, size
        )
        last = views[-1].template if views and more else None
        return templating_pb2.ListTemplatesResponse(
            templates=[template_proto(view) for view in views],
            next_page_token=encode_page_token((last.key, last.channel, last.locale)) if last else "",
        )

    @override
    async def GetTemplate(
        self, request: templating_pb2.GetTemplateRequest, context: object
    ) -> templating_pb2.Template:
        return template_proto(
            await self.templates.get(template_id(request.key, request.channel, request.locale))
        )

    @override
    async def CreateTemplateVersion(
        self, request: templating_pb2.CreateTemplateVersionRequest, context: object
    ) -> templating_pb2.TemplateVersion:
        template = template_id(request.key, request.channel, request.locale)
        whatsapp = request.whatsapp if request.HasField("whatsapp") else None
        draft = VersionDraft(
            template,
            request.subject,
            request.body,
            tuple(VariableSpec(v.name, v.type, v.required) for v in request.variables),
            struct_dict(request.sample),
            WhatsAppSpec(whatsapp.name, whatsapp.language, tuple(whatsapp.parameters)) if whatsapp else None,
        )
        return version_proto(await self.templates.create_version(draft))

    @override
    async def Publish(
        self, request: templating_pb2.PublishRequest, context: object
    ) -> templating_pb2.Template:
        template = template_id(request.key, request.channel, request.locale)
        return template_proto(await self.templates.publish(template, positive(request.version, "version")))

    @override
    async def Rollback(
        self, request: templating_pb2.RollbackRequest, context: object
    ) -> templating_pb2.Template:
        return template_proto(
            await self.templates.rollback(template_id(request.key, request.channel, request.locale))
        )


# ---------------------------------------------------------------- conversions


def template_id(key: str, channel: str, locale: str) -> TemplateId:
    fields = validated(TemplateIdInput, {"key": key, "channel": channel, "locale": locale})
    return TemplateId(fields.key, fields.channel, fields.locale)


def positive(value: int, field: str) -> int:
    if value < 1:
        raise InvalidArgument.of(field, "required: a version number from 1")
    return value


def struct_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(struct)


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def rendered_proto(rendered: Rendered) -> templating_pb2.RenderResponse:
    response = templating_pb2.RenderResponse(
        subject=rendered.subject,
        body=rendered.body,
        template=rendered.template,
        locale=rendered.locale,
        gsm7=rendered.gsm7,
        segments=rendered.segments,
    )
    if rendered.whatsapp is not None:
        response.whatsapp.CopyFrom(
            templating_pb2.WhatsAppMessage(
                name=rendered.whatsapp.name,
                language=rendered.whatsapp.language,
                parameters=list(rendered.whatsapp.parameters),
            )
        )
    return response


def render_result(result: Rendered | DomainError) -> templating_pb2.RenderResult:
    if isinstance(result, DomainError):
        return templating_pb2.RenderResult(error=status_proto(result))
    return templating_pb2.RenderResult(rendered=rendered_proto(result))


def version_proto(version: TemplateVersion) -> templating_pb2.TemplateVersion:
    draft = version.draft
    message = templating_pb2.TemplateVersion(
        key=draft.template.key,
        channel=draft.template.channel,
        locale=draft.template.locale,
        version=version.version,
        state=version.state,
        subject=draft.subject,
        body=draft.body,
        variables=[
            templating_pb2.Variable(name=v.name, type=v.type, required=v.required) for v in draft.variables
        ],
        sample=_struct(draft.sample),
        create_time=rfc3339(version.created_at),
        publish_time=rfc3339(version.published_at) if version.published_at else "",
    )
    if draft.whatsapp is not None:
        message.whatsapp.CopyFrom(
            templating_pb2.WhatsAppMapping(
                name=draft.whatsapp.name,
                language=draft.whatsapp.language,
                parameters=list(draft.whatsapp.parameters),
            )
        )
    return message


def template_proto(view: TemplateView) -> templating_pb2.Template:
    return templating_pb2.Template(
        key=view.template.key,
        channel=view.template.channel,
        locale=view.template.locale,
        published_version=view.published_version,
        versions=[version_proto(version) for version in view.versions],
    )


def encode_page_token(last: tuple[str, str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(last)).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[str, str, str] | None:
    if not token:
        return None
    try:
        last = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidArgument.of("page_token", "not a token this service issued") from None
    if not (isinstance(last, list) and len(last) == 3 and all(isinstance(part, str) for part in last)):
        raise InvalidArgument.of("page_token", "not a token this service issued")
    return (last[0], last[1], last[2])
