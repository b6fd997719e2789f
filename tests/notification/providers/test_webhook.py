"""The webhook adapter against a receiver verifying Standard Webhooks signatures by the spec."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator

import pytest
from standardwebhooks import Webhook

from services.notification.providers.base import OutboundMessage, ProviderError
from services.notification.providers.webhook import (
    StandardWebhookProvider,
    WebhookUrlRefused,
    check_webhook_url,
    generate_webhook_secret,
)
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.notification.providers.conftest import STALL_SECONDS, STALL_TIMEOUTS, webhook_settings

SECRET = generate_webhook_secret()


def message(to: str, **overrides: object) -> OutboundMessage:
    values: dict[str, object] = {
        "delivery_id": "dlv_hook_1",
        "channel": "webhook",
        "to": to,
        "subject": "Budget Food at 80%",
        "body": "You have spent ₹8,000 of ₹10,000.",
        "webhook_secret": SECRET,
        "webhook_event_type": "alert.raised",
    }
    return OutboundMessage(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def receiver() -> AsyncIterator[FakeWebhookReceiver]:
    async with FakeWebhookReceiver(SECRET) as server:
        yield server


@pytest.fixture
async def provider() -> AsyncIterator[StandardWebhookProvider]:
    adapter = StandardWebhookProvider(webhook_settings())
    yield adapter
    await adapter.aclose()


async def test_signed_post_verifies_at_the_receiver(
    receiver: FakeWebhookReceiver, provider: StandardWebhookProvider
) -> None:
    result = await provider.send(message(receiver.url))

    assert (result.provider_message_id, result.status) == ("dlv_hook_1", "delivered")
    [received] = receiver.received
    assert received.verified
    assert received.webhook_id == "dlv_hook_1"
    assert abs(received.timestamp - time.time()) < 60
    assert received.headers["content-type"] == "application/json"
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", received.headers["webhook-signature"])
    envelope = received.json()
    assert envelope["type"] == "alert.raised"
    assert envelope["data"] == {
        "id": "dlv_hook_1",
        "subject": "Budget Food at 80%",
        "body": "You have spent ₹8,000 of ₹10,000.",
    }
    # The reference library agrees with the receiver's hand-written check.
    assert Webhook(SECRET).verify(received.body, received.headers)["type"] == "alert.raised"


async def test_a_resend_keeps_the_webhook_id(
    receiver: FakeWebhookReceiver, provider: StandardWebhookProvider
) -> None:
    await provider.send(message(receiver.url))
    await provider.send(message(receiver.url))

    assert [webhook.webhook_id for webhook in receiver.verified] == ["dlv_hook_1", "dlv_hook_1"]


async def test_receiver_with_another_secret_refuses_and_that_is_not_retryable(
    provider: StandardWebhookProvider,
) -> None:
    async with FakeWebhookReceiver(generate_webhook_secret()) as stranger:
        with pytest.raises(ProviderError) as raised:
            await provider.send(message(stranger.url))

    assert not raised.value.retryable
    assert "HTTP 401" in str(raised.value)
    assert [webhook.verified for webhook in stranger.received] == [False]


async def test_receiver_outage_is_retryable(
    receiver: FakeWebhookReceiver, provider: StandardWebhookProvider
) -> None:
    receiver.outage(503)

    with pytest.raises(ProviderError) as raised:
        await provider.send(message(receiver.url))

    assert raised.value.retryable
    assert receiver.failed_requests == 1


async def test_stalled_receiver_times_out_retryably(receiver: FakeWebhookReceiver) -> None:
    receiver.delay_seconds = STALL_SECONDS
    provider = StandardWebhookProvider(webhook_settings(timeouts=STALL_TIMEOUTS))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message(receiver.url))

    assert raised.value.retryable
    assert "timed out" in str(raised.value)
    await provider.aclose()


async def test_loopback_is_refused_unless_allowed(receiver: FakeWebhookReceiver) -> None:
    provider = StandardWebhookProvider(webhook_settings(allow_http_localhost=False))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message(receiver.url))

    assert not raised.value.retryable
    assert receiver.received == []
    await provider.aclose()


@pytest.mark.parametrize(
    "host",
    [
        "localhost",  # a name resolving to loopback
        "2130706433",  # 127.0.0.1 written as one number: no IP literal to refuse before resolving
    ],
)
async def test_host_resolving_to_loopback_is_refused_at_send(
    receiver: FakeWebhookReceiver, host: str
) -> None:
    provider = StandardWebhookProvider(webhook_settings(allow_http_localhost=False))
    url = receiver.url.replace("http://127.0.0.1", f"https://{host}")

    with pytest.raises(ProviderError) as raised:
        await provider.send(message(url))

    assert not raised.value.retryable
    assert "private network" in str(raised.value)
    assert receiver.received == []
    await provider.aclose()


async def test_message_without_secret_is_refused(provider: StandardWebhookProvider) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.send(message("https://hooks.example.com/in", webhook_secret=None))

    assert not raised.value.retryable


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/in",  # not https
        "ftp://hooks.example.com/in",
        "https:///in",  # no host
        "https://user:pass@hooks.example.com/in",
        "https://10.0.0.7/in",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/in",
        "https://127.0.0.1/in",
    ],
)
def test_urls_refused_at_registration(url: str) -> None:
    with pytest.raises(WebhookUrlRefused):
        check_webhook_url(url, webhook_settings(allow_http_localhost=False))


def test_public_https_url_is_accepted() -> None:
    check_webhook_url("https://hooks.example.com/in?team=7", webhook_settings(allow_http_localhost=False))
    check_webhook_url("https://93.184.215.14/in", webhook_settings(allow_http_localhost=False))


def test_generated_secrets_follow_the_spec_format() -> None:
    first, second = generate_webhook_secret(), generate_webhook_secret()

    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
