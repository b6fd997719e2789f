"""Signature checks against the providers' documented examples, and what the callbacks carry."""

from __future__ import annotations

import hashlib

import pytest

from services.notification.providers.callbacks import (
    StatusUpdate,
    meta_inbound_messages,
    meta_status_updates,
    meta_verify_challenge,
    twilio_form,
    twilio_status_update,
    verify_meta_signature,
    verify_twilio_signature,
)
from tests.fakes.graph import FakeGraphApi
from tests.fakes.twilio import sign_twilio_request

# Twilio's own example (their docs and RequestValidator's tests).
TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
TWILIO_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="

# Meta's X-Hub-Signature-256 over a raw body.
META_SECRET = "test_app_secret"
META_BODY = b'{"object":"whatsapp_business_account","entry":[]}'
META_SIGNATURE = "sha256=dec6a680679a968e7e0319355b23599cbfc54502c0784668e9618baa0c633756"


def test_twilio_documented_example_verifies() -> None:
    assert verify_twilio_signature(TWILIO_URL, TWILIO_PARAMS, TWILIO_SIGNATURE, TWILIO_TOKEN)


def test_twilio_params_in_any_order_verify() -> None:
    reordered = dict(reversed(list(TWILIO_PARAMS.items())))

    assert verify_twilio_signature(TWILIO_URL, reordered, TWILIO_SIGNATURE, TWILIO_TOKEN)


def test_twilio_url_with_and_without_default_port_verify() -> None:
    with_port = TWILIO_URL.replace("mycompany.com", "mycompany.com:443")

    assert verify_twilio_signature(with_port, TWILIO_PARAMS, TWILIO_SIGNATURE, TWILIO_TOKEN)


@pytest.mark.parametrize(
    ("url", "params", "signature", "token"),
    [
        (TWILIO_URL, TWILIO_PARAMS | {"Digits": "1235"}, TWILIO_SIGNATURE, TWILIO_TOKEN),  # tampered value
        (TWILIO_URL, TWILIO_PARAMS | {"Extra": "1"}, TWILIO_SIGNATURE, TWILIO_TOKEN),  # added param
        (
            TWILIO_URL,
            TWILIO_PARAMS | {"From": "+18005551212", "To": "+12349013030"},
            TWILIO_SIGNATURE,
            TWILIO_TOKEN,
        ),
        (
            "https://mycompany.com/myapp.php?bar=2&foo=1",
            TWILIO_PARAMS,
            TWILIO_SIGNATURE,
            TWILIO_TOKEN,
        ),  # query reordered
        (
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            TWILIO_PARAMS,
            TWILIO_SIGNATURE,
            TWILIO_TOKEN,
        ),  # scheme
        ("https://mycompany.com:8443/myapp.php?foo=1&bar=2", TWILIO_PARAMS, TWILIO_SIGNATURE, TWILIO_TOKEN),
        (TWILIO_URL, TWILIO_PARAMS, TWILIO_SIGNATURE, "54321"),  # wrong token
        (TWILIO_URL, TWILIO_PARAMS, "", TWILIO_TOKEN),
        (TWILIO_URL, TWILIO_PARAMS, TWILIO_SIGNATURE, ""),
    ],
)
def test_twilio_signature_refused(url: str, params: dict[str, str], signature: str, token: str) -> None:
    assert not verify_twilio_signature(url, params, signature, token)


def test_twilio_json_bodied_example_signs_the_url_only() -> None:
    """Twilio's JSON webhooks carry sha256(body) in the URL and sign the URL alone."""
    body = b'{"MessageSid":"SMx","MessageStatus":"delivered"}'
    url = f"https://example.test/twilio/status?bodySHA256={hashlib.sha256(body).hexdigest()}"

    assert verify_twilio_signature(url, {}, "TVjOfpy/rHDicnIgNcGq/3576Eo=", TWILIO_TOKEN)
    assert not verify_twilio_signature(
        url.replace("2d74", "2d75"), {}, "TVjOfpy/rHDicnIgNcGq/3576Eo=", TWILIO_TOKEN
    )


def test_meta_documented_example_verifies() -> None:
    assert verify_meta_signature(META_BODY, META_SIGNATURE, META_SECRET)


@pytest.mark.parametrize(
    ("body", "header", "secret"),
    [
        (META_BODY.replace(b"[]", b"[ ]"), META_SIGNATURE, META_SECRET),  # re-serialised body
        (META_BODY + b"\n", META_SIGNATURE, META_SECRET),
        (META_BODY, META_SIGNATURE, "another_app_secret"),
        (META_BODY, META_SIGNATURE.removeprefix("sha256="), META_SECRET),  # no scheme
        (META_BODY, META_SIGNATURE.replace("sha256=", "sha1="), META_SECRET),
        (META_BODY, "", META_SECRET),
        (META_BODY, META_SIGNATURE, ""),
    ],
)
def test_meta_signature_refused(body: bytes, header: str, secret: str) -> None:
    assert not verify_meta_signature(body, header, secret)


def test_twilio_form_keeps_empty_parameters_the_signature_covers() -> None:
    raw = b"MessageSid=SM1&MessageStatus=delivered&ErrorCode=&To=%2B919876543210"
    form = twilio_form(raw)
    url = "https://api.mesh.example/v1/providers/twilio/status?delivery_id=d1"
    signature = sign_twilio_request(TWILIO_TOKEN, url, form)

    assert form == {"MessageSid": "SM1", "MessageStatus": "delivered", "ErrorCode": "", "To": "+919876543210"}
    assert verify_twilio_signature(url, form, signature, TWILIO_TOKEN)
    assert not verify_twilio_signature(url, {k: v for k, v in form.items() if v}, signature, TWILIO_TOKEN)


def test_twilio_status_update_reads_the_form() -> None:
    update = twilio_status_update(
        {
            "MessageSid": "SM1",
            "MessageStatus": "Undelivered",
            "ErrorCode": "30003",
            "ErrorMessage": "Unreachable",
        }
    )

    assert update == StatusUpdate(provider_message_id="SM1", status="undelivered", error="30003: Unreachable")
    assert twilio_status_update({"SmsSid": "SM2", "SmsStatus": "delivered", "ErrorCode": ""}) == StatusUpdate(
        "SM2", "delivered", None
    )


def test_twilio_status_update_needs_sid_and_status() -> None:
    with pytest.raises(ValueError, match="MessageSid"):
        twilio_status_update({"MessageStatus": "delivered"})


def test_meta_status_updates_reads_every_status_in_order() -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "statuses": [
                                {"id": "wamid.A", "status": "sent", "biz_opaque_callback_data": "dlv_1"},
                                {"id": "wamid.A", "status": "READ"},
                                {
                                    "id": "wamid.B",
                                    "status": "failed",
                                    "errors": [{"code": 131047, "title": "Re-engagement message"}],
                                },
                                {"status": "delivered"},  # no id: skipped
                            ]
                        },
                    },
                    {
                        "field": "message_template_status_update",
                        "value": {"statuses": [{"id": "x", "status": "y"}]},
                    },
                ],
            }
        ],
    }

    assert meta_status_updates(payload) == [
        StatusUpdate("wamid.A", "sent", None, "dlv_1"),
        StatusUpdate("wamid.A", "read", None, None),
        StatusUpdate("wamid.B", "failed", "131047: Re-engagement message", None),
    ]
    assert meta_status_updates({"object": "page", "entry": payload["entry"]}) == []


def test_meta_inbound_messages_and_statuses_are_told_apart() -> None:
    graph = FakeGraphApi()
    inbound = graph.inbound_payload("+919876543210", "hello")

    assert meta_status_updates(inbound) == []
    assert [message.sender for message in meta_inbound_messages(inbound)] == ["+919876543210"]


def test_meta_subscription_handshake() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "our-token", "hub.challenge": "1158201444"}

    assert meta_verify_challenge(params, "our-token") == "1158201444"
    assert meta_verify_challenge(params, "another-token") is None
    assert meta_verify_challenge(params | {"hub.mode": "unsubscribe"}, "our-token") is None
