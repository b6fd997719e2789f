"""Twilio's Messages API as its clients see it: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`
with HTTP Basic AccountSid:AuthToken and a form (To, From or MessagingServiceSid, Body,
StatusCallback), answered 201 with the message (`sid` SM + 32 hex, `status` queued, or
accepted through a Messaging Service). It can post status callbacks to the StatusCallback URL
signed with X-Twilio-Signature, computed here on its own (not with the adapter's code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from aiohttp import BasicAuth, web

from tests.fakes.http import FakeHttpServer

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass
class TwilioMessage:
    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    form: dict[str, str] = field(default_factory=dict)


def twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


def sign_twilio_request(auth_token: str, url: str, form: dict[str, str]) -> str:
    """Twilio's X-Twilio-Signature: base64(HMAC-SHA1(token, url + sorted name+value pairs))."""
    payload = url + "".join(f"{name}{value}" for name, value in sorted(form.items()))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


class FakeTwilio(FakeHttpServer):
    def __init__(
        self,
        account_sid: str = "AC" + "0" * 32,
        auth_token: str = "fake-twilio-token",
        auto_statuses: Sequence[str] = (),
    ) -> None:
        """auto_statuses: posted in order to each message's StatusCallback right after it is
        created, as Twilio does (e.g. ("sent", "delivered")); answers in `callback_answers`."""
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.auto_statuses = tuple(auto_statuses)
        self.messages: list[TwilioMessage] = []
        self.unauthorized_requests = 0

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/2010-04-01/Accounts/{account_sid}/Messages.json", self._create_message)]

    def default_failure_body(self, status: int) -> dict[str, object]:
        return {"code": 20500, "message": "Internal Server Error", "status": status}

    async def _create_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            self.unauthorized_requests += 1
            return twilio_error(401, 20003, "Authenticate")
        form = {name: str(value) for name, value in (await request.post()).items()}
        to, body = form.get("To", ""), form.get("Body", "")
        if not E164.match(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not body:
            return twilio_error(400, 21602, "Message body is required.")
        service = form.get("MessagingServiceSid")
        if not form.get("From") and not service:
            return twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        message = TwilioMessage(
            sid="SM" + secrets.token_hex(16),
            to=to,
            from_=form.get("From"),
            messaging_service_sid=service,
            body=body,
            status_callback=form.get("StatusCallback"),
            form=form,
        )
        self.messages.append(message)
        if self.auto_statuses and message.status_callback:
            self.in_background(self._report(message.sid))
        return web.json_response(self._resource(message, "accepted" if service else "queued"), status=201)

    def _authorized(self, request: web.Request) -> bool:
        if request.match_info["account_sid"] != self.account_sid:
            return False
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return False
        return auth.login == self.account_sid and hmac.compare_digest(auth.password, self.auth_token)

    def _resource(self, message: TwilioMessage, status: str) -> dict[str, object]:
        return {
            "sid": message.sid,
            "account_sid": self.account_sid,
            "messaging_service_sid": message.messaging_service_sid,
            "to": message.to,
            "from": message.from_,
            "body": message.body,
            "status": status,
            "num_segments": "1",
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "price": None,
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message.sid}.json",
        }

    async def _report(self, sid: str) -> None:
        for status in self.auto_statuses:
            await self.report(f"{sid} {status}", self.send_status_callback(sid, status))

    def message(self, sid: str) -> TwilioMessage:
        return next(message for message in self.messages if message.sid == sid)

    async def send_status_callback(
        self, sid: str, status: str, error_code: str | None = None, signing_token: str | None = None
    ) -> httpx.Response:
        """Posts the message's status to its StatusCallback, signed (with `signing_token`
        instead of the account's to play an impostor)."""
        message = self.message(sid)
        assert message.status_callback, "the message was sent without a StatusCallback"
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": message.from_ or "",
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if error_code:
            form["ErrorCode"] = error_code
        signature = sign_twilio_request(signing_token or self.auth_token, message.status_callback, form)
        return await self.post_callback(
            message.status_callback, data=form, headers={"X-Twilio-Signature": signature}
        )
