"""The WhatsApp adapter against the Graph API fake, and Meta's signed webhooks back to us."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from services.notification.providers.base import OutboundMessage, ProviderError, WhatsAppTemplate
from services.notification.providers.callbacks import meta_inbound_messages
from services.notification.providers.whatsapp import WhatsAppCloudProvider
from tests.fakes.graph import FakeGraphApi
from tests.notification.providers.conftest import STALL_SECONDS, STALL_TIMEOUTS, whatsapp_settings
from tests.notification.providers.sinks import StatusSink

BUDGET_ALERT = WhatsAppTemplate(name="budget_alert", language="en_US", parameters=["Food", "80%", "₹8,000"])


def message(**overrides: object) -> OutboundMessage:
    values: dict[str, object] = {
        "delivery_id": "dlv_wa_1",
        "channel": "whatsapp",
        "to": "+919876543210",
        "subject": None,
        "body": "Budget Food at 80%: ₹8,000 of ₹10,000",
        "whatsapp_template": BUDGET_ALERT,
    }
    return OutboundMessage(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def provider(fake_graph: FakeGraphApi) -> AsyncIterator[WhatsAppCloudProvider]:
    adapter = WhatsAppCloudProvider(whatsapp_settings(fake_graph))
    yield adapter
    await adapter.aclose()


async def test_outside_the_window_sends_the_template_with_parameters_in_order(
    fake_graph: FakeGraphApi, provider: WhatsAppCloudProvider
) -> None:
    result = await provider.send(message())

    assert result.status == "accepted"
    assert result.provider_message_id.startswith("wamid.")
    [sent] = fake_graph.messages
    assert sent.wamid == result.provider_message_id
    assert sent.payload == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "919876543210",
        "biz_opaque_callback_data": "dlv_wa_1",
        "type": "template",
        "template": {
            "name": "budget_alert",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Food"},
                        {"type": "text", "text": "80%"},
                        {"type": "text", "text": "₹8,000"},
                    ],
                }
            ],
        },
    }


async def test_inside_the_window_sends_free_text(
    fake_graph: FakeGraphApi, provider: WhatsAppCloudProvider
) -> None:
    await provider.send(message(whatsapp_session_open=True))

    [sent] = fake_graph.messages
    assert sent.type == "text"
    assert sent.payload["text"] == {"body": "Budget Food at 80%: ₹8,000 of ₹10,000", "preview_url": False}
    assert "template" not in sent.payload


async def test_outside_the_window_without_template_is_refused_unsent(
    fake_graph: FakeGraphApi, provider: WhatsAppCloudProvider
) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.send(message(whatsapp_template=None))

    assert not raised.value.retryable
    assert "template" in str(raised.value)
    assert fake_graph.messages == []


async def test_empty_template_parameter_is_refused_unsent(
    fake_graph: FakeGraphApi, provider: WhatsAppCloudProvider
) -> None:
    template = WhatsAppTemplate(name="budget_alert", language="en_US", parameters=["Food", " ", "₹8,000"])

    with pytest.raises(ProviderError) as raised:
        await provider.send(message(whatsapp_template=template))

    assert not raised.value.retryable
    assert fake_graph.messages == []


async def test_wrong_token_is_not_retryable(fake_graph: FakeGraphApi) -> None:
    provider = WhatsAppCloudProvider(whatsapp_settings(fake_graph, access_token=SecretStr("expired-token")))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert not raised.value.retryable
    assert raised.value.provider_code == "190"
    assert "expired-token" not in str(raised.value)
    assert fake_graph.unauthorized_requests == 1
    await provider.aclose()


async def test_outage_is_retryable_then_recovers(
    fake_graph: FakeGraphApi, provider: WhatsAppCloudProvider
) -> None:
    fake_graph.outage(503)
    with pytest.raises(ProviderError) as raised:
        await provider.send(message())
    assert raised.value.retryable

    fake_graph.recover()
    result = await provider.send(message())

    assert [sent.wamid for sent in fake_graph.messages] == [result.provider_message_id]


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (429, 130429, True),  # throughput rate limit
        (400, 131056, True),  # pair rate limit: answered 400, yet waiting helps
        (400, 100, False),  # invalid parameter
        (404, 132001, False),  # template missing in this language
    ],
)
async def test_graph_error_codes_decide_retry(
    fake_graph: FakeGraphApi, provider: WhatsAppCloudProvider, status: int, code: int, retryable: bool
) -> None:
    fake_graph.outage(status, {"error": {"message": "refused", "type": "OAuthException", "code": code}})

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert raised.value.retryable is retryable
    assert raised.value.provider_code == str(code)


async def test_invalid_number_is_refused_by_the_api(
    fake_graph: FakeGraphApi, provider: WhatsAppCloudProvider
) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.send(message(to="+91 98765 43210"))

    assert not raised.value.retryable
    assert raised.value.provider_code == "100"


async def test_stalled_api_times_out_retryably(fake_graph: FakeGraphApi) -> None:
    fake_graph.delay_seconds = STALL_SECONDS
    provider = WhatsAppCloudProvider(whatsapp_settings(fake_graph, timeouts=STALL_TIMEOUTS))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert raised.value.retryable
    assert "timed out" in str(raised.value)
    await provider.aclose()


async def test_signed_status_webhooks_are_accepted_and_name_our_delivery(
    fake_graph: FakeGraphApi, provider: WhatsAppCloudProvider
) -> None:
    wamid = (await provider.send(message())).provider_message_id
    failure = [{"code": 131026, "title": "Message undeliverable"}]

    async with StatusSink(meta_app_secret=fake_graph.app_secret) as sink:
        delivered = await fake_graph.post_webhook(
            sink.meta_url, fake_graph.status_payload(wamid, "delivered")
        )
        failed = await fake_graph.post_webhook(
            sink.meta_url, fake_graph.status_payload(wamid, "failed", failure)
        )

    assert (delivered.status_code, failed.status_code) == (200, 200)
    assert [(update.provider_message_id, update.status, update.delivery_id) for update in sink.updates] == [
        (wamid, "delivered", "dlv_wa_1"),
        (wamid, "failed", "dlv_wa_1"),
    ]
    assert sink.updates[1].error == "131026: Message undeliverable"


async def test_webhook_signed_with_another_secret_is_refused(
    fake_graph: FakeGraphApi, provider: WhatsAppCloudProvider
) -> None:
    wamid = (await provider.send(message())).provider_message_id

    async with StatusSink(meta_app_secret=fake_graph.app_secret) as sink:
        answer = await fake_graph.post_webhook(
            sink.meta_url, fake_graph.status_payload(wamid, "read"), signing_secret="not-the-app-secret"
        )

    assert answer.status_code == 401
    assert sink.refused == 1
    assert sink.updates == []


def test_inbound_message_opens_the_window() -> None:
    graph = FakeGraphApi()

    [inbound] = meta_inbound_messages(graph.inbound_payload("+919876543210", "STOP"))

    assert inbound.sender == "+919876543210"
    assert inbound.text == "STOP"
    assert inbound.provider_message_id.startswith("wamid.")


async def test_meta_reports_statuses_on_its_own_like_the_real_one() -> None:
    async with StatusSink(meta_app_secret="fake-app-secret") as sink:
        graph = FakeGraphApi(webhook_url=sink.meta_url, auto_statuses=("sent", "read"))
        async with graph:
            provider = WhatsAppCloudProvider(whatsapp_settings(graph))
            wamid = (await provider.send(message())).provider_message_id
            await graph.settled()
            await provider.aclose()

    assert graph.callback_answers == [(f"{wamid} sent", 200), (f"{wamid} read", 200)]
    assert [(update.status, update.delivery_id) for update in sink.updates] == [
        ("sent", "dlv_wa_1"),
        ("read", "dlv_wa_1"),
    ]
