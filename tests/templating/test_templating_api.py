"""TemplatingInternalService through the real service process (`up` with auth and
templating, SQLite and PostgreSQL): an operator lists, previews, publishes and rolls
back; the notification service's token opens Render only; a user token and other
services are refused; bad requests get INVALID_ARGUMENT naming the fields."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from expense.auth.v1 import auth_pb2, auth_pb2_grpc
from expense.templating.v1 import templating_pb2 as pb
from expense.templating.v1 import templating_pb2_grpc
from services.kit.identity.service_tokens import Caller
from services.templating.defaults import load_drafts, templates_dir
from services.templating.settings import TemplatingSettings
from tests.infra import NATS_URL, REDIS_URL, fresh_postgres_database, require
from tests.mesh import Mesh, forget_run, running_mesh
from tests.service_identity import operator_bearer, signed_token

Metadata = tuple[tuple[str, str], ...]
TIMEOUT = 30.0
TEMPLATING_MESH = ["auth", "templating"]
DEFAULTS = load_drafts(templates_dir(TemplatingSettings().templates_dir))
SAMPLE = next(
    d for d in DEFAULTS if (d.template.key, d.template.channel) == ("budget.threshold", "sms")
).sample


@pytest.fixture(scope="module")
def templating_mesh_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("templating-sqlite"), TEMPLATING_MESH) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def templating_mesh_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    require("NATS", "127.0.0.1", 4222)
    require("Redis", "127.0.0.1", 6379)
    with fresh_postgres_database() as database_url:
        env = {"DATABASE_URL": database_url, "NATS_URL": NATS_URL, "REDIS_URL": REDIS_URL}
        mesh = Mesh(tmp_path_factory.mktemp("templating-postgres"), TEMPLATING_MESH, env)
        try:
            mesh.start()
            yield mesh
        finally:
            mesh.stop()
            forget_run(mesh)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def mesh(request: pytest.FixtureRequest) -> Mesh:
    return request.getfixturevalue(f"templating_mesh_{request.param}")


class Clients:
    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.channel = grpc.aio.insecure_channel(mesh.address("templating"))
        self.auth_channel = grpc.aio.insecure_channel(mesh.address("auth"))
        self.templating = templating_pb2_grpc.TemplatingInternalServiceStub(self.channel)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.auth_channel)
        self.operator = operator_bearer(mesh.data_dir, "ops")

    def service(self, name: str) -> Metadata:
        return (("authorization", f"Bearer {signed_token(self.mesh.data_dir, Caller('service', name))}"),)

    async def user(self) -> Metadata:
        request = auth_pb2.SignUpRequest(
            email=f"tpl.{secrets.token_hex(6)}@example.org",
            password="violet-harbor-tune-42",
            display_name="Tpl",
        )
        tokens = await self.auth.SignUp(request, timeout=TIMEOUT)
        return (("authorization", f"Bearer {tokens.access_token}"),)

    async def close(self) -> None:
        await self.channel.close()
        await self.auth_channel.close()


@pytest.fixture
async def clients(mesh: Mesh) -> AsyncIterator[Clients]:
    clients = Clients(mesh)
    yield clients
    await clients.close()


def struct(values: dict[str, object]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def render_request(locale: str = "en", **variables: object) -> pb.RenderRequest:
    return pb.RenderRequest(
        key="budget.threshold", channel="sms", locale=locale, variables=struct({**SAMPLE, **variables})
    )


async def failure(call: object) -> grpc.aio.AioRpcError:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded but was expected to fail")


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None, error
    found = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def test_a_user_token_and_no_token_are_refused(clients: Clients) -> None:
    user = await clients.user()
    calls = {
        "Render": lambda md: clients.templating.Render(render_request(), metadata=md, timeout=TIMEOUT),
        "ListTemplates": lambda md: clients.templating.ListTemplates(
            pb.ListTemplatesRequest(), metadata=md, timeout=TIMEOUT
        ),
    }
    for name, call in calls.items():
        assert (await failure(call(user))).code() == grpc.StatusCode.PERMISSION_DENIED, name
        assert (await failure(call(()))).code() == grpc.StatusCode.UNAUTHENTICATED, name


async def test_notification_may_render_and_nothing_else(clients: Clients) -> None:
    notification = clients.service("notification")
    rendered = await clients.templating.Render(
        render_request("hi-IN"), metadata=notification, timeout=TIMEOUT
    )
    assert (rendered.locale, rendered.template, rendered.gsm7) == ("hi", "budget.threshold@1", False)
    assert "₹12,34,567.50" in rendered.body and rendered.segments == 2
    refused = await failure(
        clients.templating.Publish(
            pb.PublishRequest(key="budget.threshold", channel="sms", locale="en", version=1),
            metadata=notification,
            timeout=TIMEOUT,
        )
    )
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    billing = await failure(
        clients.templating.Render(render_request(), metadata=clients.service("billing"), timeout=TIMEOUT)
    )
    assert billing.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_operator_lists_every_default_template(clients: Clients) -> None:
    seen, token = [], ""
    while True:
        page = await clients.templating.ListTemplates(
            pb.ListTemplatesRequest(page_size=30, page_token=token),
            metadata=clients.operator,
            timeout=TIMEOUT,
        )
        seen += [(t.key, t.channel, t.locale) for t in page.templates]
        assert all(t.published_version >= 1 for t in page.templates)
        if not (token := page.next_page_token):
            break
    defaults = {(d.template.key, d.template.channel, d.template.locale) for d in DEFAULTS}
    assert defaults <= set(seen) and len(seen) == len(set(seen))
    whatsapp = await clients.templating.Render(
        pb.RenderRequest(
            key="budget.threshold", channel="whatsapp", locale="en-IN", variables=struct(SAMPLE)
        ),
        metadata=clients.operator,
        timeout=TIMEOUT,
    )
    assert (whatsapp.whatsapp.name, whatsapp.whatsapp.language) == ("budget_threshold_alert", "en")
    assert list(whatsapp.whatsapp.parameters) == ["Groceries", "85.5", "₹12,34,567.50", "₹14,50,000.00"]


async def test_missing_and_extra_variables_are_named(clients: Clients) -> None:
    variables = {name: value for name, value in SAMPLE.items() if name != "budget"} | {"pin": "1"}
    request = pb.RenderRequest(
        key="budget.threshold", channel="sms", locale="en", variables=struct(variables)
    )
    error = await failure(clients.templating.Render(request, metadata=clients.operator, timeout=TIMEOUT))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(error)) == {"variables.budget", "variables.pin"}
    bad = pb.RenderRequest(key="Budget!", channel="fax", locale="???")
    error = await failure(clients.templating.Render(bad, metadata=clients.operator, timeout=TIMEOUT))
    assert set(violations(error)) == {"key", "channel", "locale"}
    missing = pb.RenderRequest(key="budget.nothing", channel="sms", locale="en", variables=struct(SAMPLE))
    error = await failure(clients.templating.Render(missing, metadata=clients.operator, timeout=TIMEOUT))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_a_batch_answers_each_render_in_order_one_refusal_leaving_the_others(clients: Clients) -> None:
    without_budget = {name: value for name, value in SAMPLE.items() if name != "budget"}
    wrong_variables = pb.RenderRequest(
        key="budget.threshold", channel="sms", locale="en", variables=struct(without_budget | {"pin": "1"})
    )
    requests = [
        render_request("hi-IN"),
        pb.RenderRequest(key="budget.nothing", channel="sms", locale="en", variables=struct(SAMPLE)),
        wrong_variables,
        pb.RenderRequest(key="Budget!", channel="fax", locale="en"),
        render_request("en-IN"),
    ]
    answer = await clients.templating.BatchRender(
        pb.BatchRenderRequest(requests=requests), metadata=clients.service("ds"), timeout=TIMEOUT
    )
    kinds = [result.WhichOneof("result") for result in answer.results]
    assert kinds == ["rendered", "error", "error", "error", "rendered"]
    single = await clients.templating.Render(
        render_request("hi-IN"), metadata=clients.operator, timeout=TIMEOUT
    )
    assert answer.results[0].rendered == single
    assert answer.results[4].rendered.locale == "en" and "Rs.12,34,567.50" in answer.results[4].rendered.body
    codes = [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT]
    assert [result.error.code for result in answer.results[1:4]] == [code.value[0] for code in codes]
    bad_request = error_details_pb2.BadRequest()
    assert answer.results[2].error.details[0].Unpack(bad_request)
    assert {v.field for v in bad_request.field_violations} == {"variables.budget", "variables.pin"}
    too_many = pb.BatchRenderRequest(requests=[render_request()] * 501)
    error = await failure(
        clients.templating.BatchRender(too_many, metadata=clients.operator, timeout=TIMEOUT)
    )
    assert set(violations(error)) == {"requests"}
    billing = await failure(
        clients.templating.BatchRender(
            pb.BatchRenderRequest(requests=requests), metadata=clients.service("billing"), timeout=TIMEOUT
        )
    )
    assert billing.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_operator_drafts_previews_publishes_and_rolls_back(clients: Clients, mesh: Mesh) -> None:
    ops, t = clients.operator, clients.templating
    key = {"key": "bill.overdue", "channel": "in_app", "locale": "en"}
    original = (await t.GetTemplate(pb.GetTemplateRequest(**key), metadata=ops, timeout=TIMEOUT)).versions[-1]
    sample = {"payee": "Jio", "amount": {"amount": "399.00", "currency": "INR"}, "due_date": "2026-12-01"}
    variables = [pb.Variable(name=name, type=kind, required=True) for name, kind in
                 (("payee", "string"), ("amount", "money"), ("due_date", "date"))]  # fmt: skip
    draft = await t.CreateTemplateVersion(
        pb.CreateTemplateVersionRequest(
            **key,
            subject="Pay {{ payee }}",
            body="{{ amount|money }} is late",
            variables=variables,
            sample=struct(sample),
        ),
        metadata=ops,
        timeout=TIMEOUT,
    )
    assert (draft.version, draft.state) == (2, "draft")
    preview = await t.Preview(
        pb.PreviewRequest(**key, version=2, format_locale="en-IN"), metadata=ops, timeout=TIMEOUT
    )
    assert (preview.subject, preview.body, preview.template) == (
        "Pay Jio",
        "₹399.00 is late",
        "bill.overdue@2",
    )

    notification = clients.service("notification")
    render = pb.RenderRequest(**key, variables=struct(sample))
    assert (await t.Render(render, metadata=notification, timeout=TIMEOUT)).template == "bill.overdue@1"
    published = await t.Publish(pb.PublishRequest(**key, version=2), metadata=ops, timeout=TIMEOUT)
    assert published.published_version == 2
    assert (await t.Render(render, metadata=notification, timeout=TIMEOUT)).subject == "Pay Jio"
    rolled = await t.Rollback(pb.RollbackRequest(**key), metadata=ops, timeout=TIMEOUT)
    assert rolled.published_version == 1
    assert (await t.Render(render, metadata=notification, timeout=TIMEOUT)).template == "bill.overdue@1"
    again = await failure(t.Rollback(pb.RollbackRequest(**key), metadata=ops, timeout=TIMEOUT))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION

    versions = (await t.GetTemplate(pb.GetTemplateRequest(**key), metadata=ops, timeout=TIMEOUT)).versions
    assert [(v.version, v.state) for v in versions] == [(2, "published"), (1, "published")]
    assert versions[-1] == original  # version 1 never changed


async def test_a_hostile_draft_is_refused_within_the_caps(clients: Clients) -> None:
    key = {"key": "user.welcome", "channel": "sms", "locale": "en"}
    variables = [pb.Variable(name="name", type="string", required=True)]
    for body in ("{{ 'a' * 50000000 }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
                 "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}"):  # fmt: skip
        request = pb.CreateTemplateVersionRequest(
            **key, body=body, variables=variables, sample=struct({"name": "A"})
        )
        error = await failure(
            clients.templating.CreateTemplateVersion(request, metadata=clients.operator, timeout=5)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "body" in violations(error), body
    versions = await clients.templating.GetTemplate(
        pb.GetTemplateRequest(**key), metadata=clients.operator, timeout=TIMEOUT
    )
    assert [v.version for v in versions.versions] == [1]
