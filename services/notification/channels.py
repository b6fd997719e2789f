"""What the delivery worker sends through: a channel per name, each an adapter of
services/notification/providers (email, SMS, WhatsApp, webhooks) or the in-app inbox
below, all with one shape."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

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
    as its title and body, in the worker's transaction (nothing leaves the database).
    Delivered at once; the notification id is the message id."""

    channel = "in_app"

    async def show(self, session: AsyncSession, message: OutboundMessage) -> SendResult:
        await storage.show(session, message.to, message.subject or "", message.body)
        return SendResult(provider_message_id=message.to, status=DELIVERED)

    async def aclose(self) -> None:
        return None
