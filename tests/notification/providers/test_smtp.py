"""The email adapter against a local relay requiring STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from services.notification.providers.base import OutboundMessage, ProviderError
from services.notification.providers.smtp import SmtpEmailProvider
from tests.fakes.smtp import FakeSmtpServer
from tests.notification.providers.conftest import STALL_SECONDS, STALL_TIMEOUTS, email_settings


def message(**overrides: object) -> OutboundMessage:
    values: dict[str, object] = {
        "delivery_id": "dlv_01JEXAMPLE",
        "channel": "email",
        "to": "asha@example.com",
        "subject": "Budget Food at 80%",
        "body": "You have spent Rs. 8,000 of Rs. 10,000.",
        "html": "<p>You have spent <b>₹8,000</b> of ₹10,000.</p>",
    }
    return OutboundMessage(**(values | overrides))  # type: ignore[arg-type]


async def test_sends_text_and_html_over_starttls_with_auth(fake_smtp: FakeSmtpServer) -> None:
    provider = SmtpEmailProvider(email_settings(fake_smtp))

    result = await provider.send(message())

    assert result.status == "sent"
    assert result.provider_message_id == "<dlv_01JEXAMPLE@mesh.example>"
    [received] = fake_smtp.messages
    assert received.over_tls
    assert received.login == "mailer"
    assert received.mail_from == "alerts@mesh.example"
    assert received.recipients == ["asha@example.com"]
    email = received.message
    assert email["Message-ID"] == "<dlv_01JEXAMPLE@mesh.example>"
    assert email["Subject"] == "Budget Food at 80%"
    assert email["Auto-Submitted"] == "auto-generated"
    assert email.get_content_type() == "multipart/alternative"
    assert email.get_body(("plain",)).get_content().strip() == "You have spent Rs. 8,000 of Rs. 10,000."
    assert "<b>₹8,000</b>" in email.get_body(("html",)).get_content()


async def test_text_only_message_is_not_multipart(fake_smtp: FakeSmtpServer) -> None:
    provider = SmtpEmailProvider(email_settings(fake_smtp, message_id_domain="mail.mesh.example"))

    result = await provider.send(message(html=None))

    assert result.provider_message_id == "<dlv_01JEXAMPLE@mail.mesh.example>"
    assert fake_smtp.messages[0].message.get_content_type() == "text/plain"


async def test_wrong_password_is_not_retryable(fake_smtp: FakeSmtpServer) -> None:
    provider = SmtpEmailProvider(email_settings(fake_smtp, password=SecretStr("not-the-password")))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert not raised.value.retryable
    assert raised.value.provider_code == "535"
    assert "not-the-password" not in str(raised.value)
    assert fake_smtp.failed_logins > 0
    assert fake_smtp.messages == []


@pytest.mark.parametrize(
    ("reply", "retryable"), [("451 4.3.0 Try again later", True), ("554 5.7.1 Rejected", False)]
)
async def test_relay_reply_class_decides_retry(
    fake_smtp: FakeSmtpServer, reply: str, retryable: bool
) -> None:
    fake_smtp.data_reply = reply
    provider = SmtpEmailProvider(email_settings(fake_smtp))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert raised.value.retryable is retryable
    assert raised.value.provider_code == reply[:3]


async def test_stalled_relay_times_out_retryably(fake_smtp: FakeSmtpServer) -> None:
    fake_smtp.data_delay_seconds = STALL_SECONDS
    provider = SmtpEmailProvider(email_settings(fake_smtp, timeouts=STALL_TIMEOUTS))
    started = time.monotonic()

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert raised.value.retryable
    assert "timed out" in str(raised.value)
    # Given up at the timeout, not after the relay's late reply (no polite QUIT first).
    assert time.monotonic() - started < STALL_SECONDS - 1


async def test_relay_down_is_retryable(fake_smtp: FakeSmtpServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    provider = SmtpEmailProvider(email_settings(fake_smtp, port=closed_port))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert raised.value.retryable


async def test_untrusted_relay_certificate_is_refused(fake_smtp: FakeSmtpServer) -> None:
    provider = SmtpEmailProvider(email_settings(fake_smtp, ca_file=None))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert not raised.value.retryable
    assert "certificate" in str(raised.value)
    assert fake_smtp.messages == []


async def test_no_clear_text_fallback_when_tls_is_off(fake_smtp: FakeSmtpServer) -> None:
    """With security "none" the relay (which requires STARTTLS) refuses; nothing goes in clear."""
    provider = SmtpEmailProvider(email_settings(fake_smtp, security="none"))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert not raised.value.retryable
    assert "AUTH" in str(raised.value)
    assert fake_smtp.messages == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Alert\r\nBcc: someone@else.example"},  # header injection
        {"to": "asha@example.com, someone@else.example"},
        {"to": "not an address"},
    ],
)
async def test_message_that_cannot_be_composed_safely_is_refused_unsent(
    fake_smtp: FakeSmtpServer, overrides: dict[str, str]
) -> None:
    provider = SmtpEmailProvider(email_settings(fake_smtp))

    with pytest.raises(ProviderError) as raised:
        await provider.send(message(**overrides))

    assert not raised.value.retryable
    assert fake_smtp.messages == []


async def eventually(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    """Waits for the fake to see what the client did in the background (QUIT, hang-ups)."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


def delivery_ids(server: FakeSmtpServer) -> list[str]:
    return [str(received.message["Message-ID"]) for received in server.messages]


async def test_messages_reuse_one_session_and_aclose_quits_it(fake_smtp: FakeSmtpServer) -> None:
    provider = SmtpEmailProvider(email_settings(fake_smtp))

    for number in range(5):
        await provider.send(message(delivery_id=f"dlv_{number}"))

    assert delivery_ids(fake_smtp) == [f"<dlv_{number}@mesh.example>" for number in range(5)]
    assert (fake_smtp.connections, fake_smtp.logins, fake_smtp.quits) == (1, 1, 0)
    assert fake_smtp.open_connections == 1
    await provider.aclose()
    assert fake_smtp.quits == 1
    await eventually(lambda: fake_smtp.open_connections == 0)


async def test_concurrent_sends_use_at_most_pool_size_sessions(fake_smtp: FakeSmtpServer) -> None:
    provider = SmtpEmailProvider(email_settings(fake_smtp, pool_size=2))

    await asyncio.gather(*(provider.send(message(delivery_id=f"dlv_{n}")) for n in range(8)))

    assert sorted(delivery_ids(fake_smtp)) == sorted(f"<dlv_{n}@mesh.example>" for n in range(8))
    assert fake_smtp.connections == 2
    await provider.aclose()
    assert fake_smtp.quits == 2


async def test_send_waits_for_a_free_session_within_pool_wait(fake_smtp: FakeSmtpServer) -> None:
    fake_smtp.data_delay_seconds = 1.0
    provider = SmtpEmailProvider(email_settings(fake_smtp, pool_size=1, pool_wait_seconds=0.1))
    slow = asyncio.create_task(provider.send(message(delivery_id="dlv_slow")))
    await eventually(lambda: fake_smtp.connections == 1)

    with pytest.raises(ProviderError) as raised:
        await provider.send(message(delivery_id="dlv_waiting"))

    assert raised.value.retryable
    assert "no free SMTP session" in str(raised.value)
    await slow
    assert delivery_ids(fake_smtp) == ["<dlv_slow@mesh.example>"]
    await provider.aclose()


async def test_relay_hanging_up_between_messages_is_survived(fake_smtp: FakeSmtpServer) -> None:
    provider = SmtpEmailProvider(email_settings(fake_smtp))
    await provider.send(message(delivery_id="dlv_1"))

    fake_smtp.drop_connections("421 4.4.2 fake-smtp.test idle too long")
    await eventually(lambda: fake_smtp.open_connections == 0)
    await provider.send(message(delivery_id="dlv_2"))

    assert delivery_ids(fake_smtp) == ["<dlv_1@mesh.example>", "<dlv_2@mesh.example>"]
    assert fake_smtp.connections == 2
    await provider.aclose()


async def test_session_ended_before_the_content_is_retried_on_a_new_one(
    fake_smtp: FakeSmtpServer,
) -> None:
    """The client cannot know the relay is closing until it answers MAIL FROM with 421."""
    provider = SmtpEmailProvider(email_settings(fake_smtp))
    await provider.send(message(delivery_id="dlv_1"))

    fake_smtp.next_mail_reply_then_close = "421 4.3.2 fake-smtp.test closing"
    await provider.send(message(delivery_id="dlv_2"))

    assert delivery_ids(fake_smtp) == ["<dlv_1@mesh.example>", "<dlv_2@mesh.example>"]
    assert fake_smtp.connections == 2
    await provider.aclose()


async def test_failure_of_a_new_session_is_not_retried(fake_smtp: FakeSmtpServer) -> None:
    """Only a reused session's staleness is retried; a relay failing now is the service's."""
    provider = SmtpEmailProvider(email_settings(fake_smtp))
    fake_smtp.next_mail_reply_then_close = "421 4.3.2 fake-smtp.test closing"

    with pytest.raises(ProviderError) as raised:
        await provider.send(message())

    assert raised.value.retryable
    assert raised.value.provider_code == "421"
    assert fake_smtp.connections == 1
    assert fake_smtp.messages == []


async def test_hang_up_after_the_content_is_reported_not_resent(fake_smtp: FakeSmtpServer) -> None:
    """The relay took the message but its reply was lost: sending again could duplicate it."""
    provider = SmtpEmailProvider(email_settings(fake_smtp))
    await provider.send(message(delivery_id="dlv_1"))
    fake_smtp.close_after_data = True

    with pytest.raises(ProviderError) as raised:
        await provider.send(message(delivery_id="dlv_2"))

    assert raised.value.retryable
    assert delivery_ids(fake_smtp) == ["<dlv_1@mesh.example>", "<dlv_2@mesh.example>"]
    assert fake_smtp.connections == 1
    fake_smtp.close_after_data = False
    await provider.send(message(delivery_id="dlv_3"))
    assert fake_smtp.connections == 2
    await provider.aclose()


async def test_idle_session_is_quit_then_replaced(fake_smtp: FakeSmtpServer) -> None:
    provider = SmtpEmailProvider(email_settings(fake_smtp, pool_idle_seconds=0.2))
    await provider.send(message(delivery_id="dlv_1"))

    await eventually(lambda: fake_smtp.quits == 1 and fake_smtp.open_connections == 0)
    await provider.send(message(delivery_id="dlv_2"))

    assert (fake_smtp.connections, fake_smtp.logins) == (2, 2)
    assert delivery_ids(fake_smtp) == ["<dlv_1@mesh.example>", "<dlv_2@mesh.example>"]
    await provider.aclose()
    assert fake_smtp.quits == 2
