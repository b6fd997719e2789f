"""What the delivery worker sends through: a channel per name, each an adapter of
services/notification/providers (email, SMS, WhatsApp, webhooks) or the in-app inbox
below, all with one shape."""

from __future__ import annotations

from typing import Protocol

from services.kit.db.engine import Database
from services.notification import storage
from services.notification.domain import DELIVERED
from services.notification.providers.base import OutboundMessage, SendResult


class Channel(Protocol):
    """A provider adapter's shape (providers/base.py `Provider`), the in-app one's too."""

    channel: str

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def aclose(self) -> None: ...


class InAppChannel:
    """The user's inbox: "sending" shows the notification, with the in-app rendering
    as its title and body. Delivered at once; the notification id is the message id."""

    channel = "in_app"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def send(self, message: OutboundMessage) -> SendResult:
        async with self.db.transaction() as session:
            await storage.show(session, message.to, message.subject or "", message.body)
        return SendResult(provider_message_id=message.to, status=DELIVERED)

    async def aclose(self) -> None:
        return None
