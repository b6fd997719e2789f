"""The SMS adapter against the Twilio fake, and Twilio's signed status callbacks back to us."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from services.notification.providers.base import OutboundMessage, ProviderError
from services.notification.providers.twilio import TwilioSmsProvider
from tests.fakes.twilio import FakeTwilio
from tests.notification.providers.conftest import STALL_SECONDS, STALL_TIMEOUTS, sms_settings
from tests.notification.providers.sinks import StatusSink


def message(**overrides: object) -> OutboundMessage:
    values: dict[str, object] = {
        "delivery_id": "dlv_sms_1",
        "channel": "sms",
        "to": "+919876543210",
        "subject": None,
        "body": "Budget Food at 80%: Rs. 8,000 of Rs. 10,000",
    }
    return OutboundMessage(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def sink(fake_twilio: FakeTwilio) -> AsyncIterator[StatusSink]:
    async with StatusSink(twilio_auth_token=fake_twilio.auth_token) as server:
        yield server


@pytest.fixture
async def provider(fake_twilio: FakeTwilio, sink: StatusSink) -> AsyncIterator[TwilioSmsProvider]:
    adapter = TwilioSmsProvider(sms_settings(fake_twilio, status_callback_url=sink.twilio_url))
    yield adapter
    await adapter.aclose()


async def test_sends_form_with_basic_auth_and_gets_queued_sid(
    fake_twilio: FakeTwilio, sink: StatusSink, provider: TwilioSmsProvider
) -> None:
    result = await provider.send(message())

    assert result.status == "queued"
    assert result.provider_message_id.startswith("SM")
    assert len(result.provider_message_id) == 34
    [sent] = fake_twilio.messages
    assert sent.sid == result.provider_message_id
    assert (sent.to, sent.from_, sent.body) == (
        "+919876543210",
        "+15005550006",
        "Budget Food at 80%: Rs. 8,000 of Rs. 10,000",
    )
    assert sent.messaging_service_sid is None
    assert sent.status_callback == f"{sink.twilio_url}?delivery_id=dlv_sms_1"


async def test_messaging_service_replaces_from(fake_twilio: FakeTwilio) -> None:
    service = "MG" + "1" * 32
    provider = TwilioSmsProvider(sms_settings(fake_twilio, from_number=None, messaging_service_sid=service))

    result = await provider.send(message())

    assert result.status == "accepted"
    assert fake_twilio.messages[0].messaging_service_sid == service
    assert "From" not in fake_twilio.messages[0].form
    assert "StatusCallback" not in fake_twilio.messages[0].form
    await provider.aclose()


async def test_wrong_auth_token_is_not_retryable(fake_twilio: FakeTwilio) -> None:
    provider = TwilioSmsProvider(sms_settings(fake_twilio, auth_token=SecretStr("wrong-token")))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert not raised.value.retryable
    assert raised.value.provider_code == "20003"
    assert "wrong-token" not in str(raised.value)
    assert fake_twilio.unauthorized_requests == 1
    assert fake_twilio.messages == []
    await provider.aclose()


async def test_invalid_number_is_not_retryable(fake_twilio: FakeTwilio, provider: TwilioSmsProvider) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.send(message(to="98765"))

    assert not raised.value.retryable
    assert raised.value.provider_code == "21211"
    assert "HTTP 400" in str(raised.value)


async def test_outage_is_retryable_and_recovery_sends(
    fake_twilio: FakeTwilio, provider: TwilioSmsProvider
) -> None:
    fake_twilio.outage(500)
    for _ in range(3):
        with pytest.raises(ProviderError) as raised:
            await provider.send(message())
        assert raised.value.retryable
        assert "HTTP 500" in str(raised.value)

    fake_twilio.recover()
    result = await provider.send(message())

    assert fake_twilio.failed_requests == 3
    assert [sent.sid for sent in fake_twilio.messages] == [result.provider_message_id]


async def test_outage_for_a_number_of_requests_ends_by_itself(
    fake_twilio: FakeTwilio, provider: TwilioSmsProvider
) -> None:
    fake_twilio.outage(503, requests=2)

    outcomes = []
    for _ in range(3):
        try:
            outcomes.append((await provider.send(message())).status)
        except ProviderError as error:
            outcomes.append(f"retryable={error.retryable}")

    assert outcomes == ["retryable=True", "retryable=True", "queued"]
    assert len(fake_twilio.messages) == 1


async def test_rate_limit_is_retryable_with_retry_after(
    fake_twilio: FakeTwilio, provider: TwilioSmsProvider
) -> None:
    fake_twilio.outage(
        429, {"code": 20429, "message": "Too Many Requests", "status": 429}, {"Retry-After": "7"}
    )

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert raised.value.retryable
    assert raised.value.provider_code == "20429"
    assert raised.value.retry_after_seconds == 7.0


async def test_stalled_api_times_out_retryably(fake_twilio: FakeTwilio) -> None:
    fake_twilio.delay_seconds = STALL_SECONDS
    provider = TwilioSmsProvider(sms_settings(fake_twilio, timeouts=STALL_TIMEOUTS))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert raised.value.retryable
    assert "timed out" in str(raised.value)
    await provider.aclose()


async def test_signed_status_callback_is_accepted_and_read(
    fake_twilio: FakeTwilio, sink: StatusSink, provider: TwilioSmsProvider
) -> None:
    sid = (await provider.send(message())).provider_message_id

    sent = await fake_twilio.send_status_callback(sid, "sent")
    delivered = await fake_twilio.send_status_callback(sid, "undelivered", error_code="30005")

    assert (sent.status_code, delivered.status_code) == (204, 204)
    assert [(update.provider_message_id, update.status) for update in sink.updates] == [
        (sid, "sent"),
        (sid, "undelivered"),
    ]
    assert sink.updates[1].error == "30005"
    assert sink.delivery_ids == ["dlv_sms_1", "dlv_sms_1"]


async def test_status_callback_signed_with_another_token_is_refused(
    fake_twilio: FakeTwilio, sink: StatusSink, provider: TwilioSmsProvider
) -> None:
    sid = (await provider.send(message())).provider_message_id

    answer = await fake_twilio.send_status_callback(sid, "delivered", signing_token="an-impostors-token")

    assert answer.status_code == 401
    assert sink.refused == 1
    assert sink.updates == []


async def test_twilio_reports_statuses_on_its_own_like_the_real_one(sink: StatusSink) -> None:
    async with FakeTwilio(auto_statuses=("sent", "delivered"), auth_token="another-accounts-token") as twilio:
        provider = TwilioSmsProvider(sms_settings(twilio, status_callback_url=sink.twilio_url))
        sid = (await provider.send(message())).provider_message_id
        await twilio.settled()
        await provider.aclose()

    assert twilio.callback_answers == [(f"{sid} sent", 401), (f"{sid} delivered", 401)]
    assert sink.refused == 2  # signed with a token the sink does not know
    assert sink.updates == []

    async with FakeTwilio(auto_statuses=("sent", "delivered"), auth_token=sink.twilio_auth_token) as twilio:
        provider = TwilioSmsProvider(sms_settings(twilio, status_callback_url=sink.twilio_url))
        sid = (await provider.send(message())).provider_message_id
        await twilio.settled()
        await provider.aclose()

    assert twilio.callback_answers == [(f"{sid} sent", 204), (f"{sid} delivered", 204)]
    assert [(update.provider_message_id, update.status) for update in sink.updates] == [
        (sid, "sent"),
        (sid, "delivered"),
    ]
