from google.protobuf import struct_pb2 as _struct_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RenderRequest(_message.Message):
    __slots__ = ("key", "channel", "locale", "variables")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    key: str
    channel: str
    locale: str
    variables: _struct_pb2.Struct
    def __init__(self, key: _Optional[str] = ..., channel: _Optional[str] = ..., locale: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class BatchRenderRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RenderRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[RenderRequest, _Mapping]]] = ...) -> None: ...

class BatchRenderResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RenderResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RenderResult, _Mapping]]] = ...) -> None: ...

class RenderResult(_message.Message):
    __slots__ = ("rendered", "error")
    RENDERED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    rendered: RenderResponse
    error: _status_pb2.Status
    def __init__(self, rendered: _Optional[_Union[RenderResponse, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class PreviewRequest(_message.Message):
    __slots__ = ("key", "channel", "locale", "version", "variables", "format_locale")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_LOCALE_FIELD_NUMBER: _ClassVar[int]
    key: str
    channel: str
    locale: str
    version: int
    variables: _struct_pb2.Struct
    format_locale: str
    def __init__(self, key: _Optional[str] = ..., channel: _Optional[str] = ..., locale: _Optional[str] = ..., version: _Optional[int] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., format_locale: _Optional[str] = ...) -> None: ...

class RenderResponse(_message.Message):
    __slots__ = ("subject", "body", "template", "locale", "gsm7", "segments", "whatsapp")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    GSM7_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    WHATSAPP_FIELD_NUMBER: _ClassVar[int]
    subject: str
    body: str
    template: str
    locale: str
    gsm7: bool
    segments: int
    whatsapp: WhatsAppMessage
    def __init__(self, subject: _Optional[str] = ..., body: _Optional[str] = ..., template: _Optional[str] = ..., locale: _Optional[str] = ..., gsm7: _Optional[bool] = ..., segments: _Optional[int] = ..., whatsapp: _Optional[_Union[WhatsAppMessage, _Mapping]] = ...) -> None: ...

class WhatsAppMessage(_message.Message):
    __slots__ = ("name", "language", "parameters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    language: str
    parameters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., language: _Optional[str] = ..., parameters: _Optional[_Iterable[str]] = ...) -> None: ...

class Variable(_message.Message):
    __slots__ = ("name", "type", "required")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    required: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., required: _Optional[bool] = ...) -> None: ...

class WhatsAppMapping(_message.Message):
    __slots__ = ("name", "language", "parameters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    language: str
    parameters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., language: _Optional[str] = ..., parameters: _Optional[_Iterable[str]] = ...) -> None: ...

class TemplateVersion(_message.Message):
    __slots__ = ("key", "channel", "locale", "version", "state", "subject", "body", "variables", "sample", "whatsapp", "create_time", "publish_time")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    WHATSAPP_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TIME_FIELD_NUMBER: _ClassVar[int]
    key: str
    channel: str
    locale: str
    version: int
    state: str
    subject: str
    body: str
    variables: _containers.RepeatedCompositeFieldContainer[Variable]
    sample: _struct_pb2.Struct
    whatsapp: WhatsAppMapping
    create_time: str
    publish_time: str
    def __init__(self, key: _Optional[str] = ..., channel: _Optional[str] = ..., locale: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[str] = ..., subject: _Optional[str] = ..., body: _Optional[str] = ..., variables: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ..., sample: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., whatsapp: _Optional[_Union[WhatsAppMapping, _Mapping]] = ..., create_time: _Optional[str] = ..., publish_time: _Optional[str] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("key", "channel", "locale", "published_version", "versions")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    key: str
    channel: str
    locale: str
    published_version: int
    versions: _containers.RepeatedCompositeFieldContainer[TemplateVersion]
    def __init__(self, key: _Optional[str] = ..., channel: _Optional[str] = ..., locale: _Optional[str] = ..., published_version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[TemplateVersion, _Mapping]]] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ("key", "channel", "locale", "page_size", "page_token")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    key: str
    channel: str
    locale: str
    page_size: int
    page_token: str
    def __init__(self, key: _Optional[str] = ..., channel: _Optional[str] = ..., locale: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates", "next_page_token")
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    next_page_token: str
    def __init__(self, templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetTemplateRequest(_message.Message):
    __slots__ = ("key", "channel", "locale")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    key: str
    channel: str
    locale: str
    def __init__(self, key: _Optional[str] = ..., channel: _Optional[str] = ..., locale: _Optional[str] = ...) -> None: ...

class CreateTemplateVersionRequest(_message.Message):
    __slots__ = ("key", "channel", "locale", "subject", "body", "variables", "sample", "whatsapp")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    WHATSAPP_FIELD_NUMBER: _ClassVar[int]
    key: str
    channel: str
    locale: str
    subject: str
    body: str
    variables: _containers.RepeatedCompositeFieldContainer[Variable]
    sample: _struct_pb2.Struct
    whatsapp: WhatsAppMapping
    def __init__(self, key: _Optional[str] = ..., channel: _Optional[str] = ..., locale: _Optional[str] = ..., subject: _Optional[str] = ..., body: _Optional[str] = ..., variables: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ..., sample: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., whatsapp: _Optional[_Union[WhatsAppMapping, _Mapping]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("key", "channel", "locale", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    channel: str
    locale: str
    version: int
    def __init__(self, key: _Optional[str] = ..., channel: _Optional[str] = ..., locale: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("key", "channel", "locale")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    key: str
    channel: str
    locale: str
    def __init__(self, key: _Optional[str] = ..., channel: _Optional[str] = ..., locale: _Optional[str] = ...) -> None: ...
