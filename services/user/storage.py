"""Tables of the user service (profiles, plus the kit's outbox and inbox) and
the queries on them. One row per user, keyed by the auth service's user id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Column, Index, MetaData, String, Table, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db.engine import UtcDateTime
from services.kit.db.erasure import erased_users_table
from services.kit.db.sql import insert_ignore
from services.kit.events.tables import add_event_tables
from services.user.domain import DISPLAY_NAME_MAX_LENGTH, Notifications, Profile

metadata = MetaData()
outbox, inbox = add_event_tables(metadata)
# A user.registered redelivered after the user's user.deleted must not create the profile again.
erased_users = erased_users_table(metadata)
Index("ix_erased_users_erased_at", erased_users.c.erased_at)

profiles = Table(
    "profiles",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("display_name", String(DISPLAY_NAME_MAX_LENGTH), nullable=False),
    Column("default_currency", String(3), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("locale", String(35), nullable=False),
    Column("first_day_of_week", String(9), nullable=False),
    Column("notification_channels", JSON, nullable=False),
    # NULL (both) when the user has no quiet hours.
    Column("quiet_hours_start", String(5), nullable=True),
    Column("quiet_hours_end", String(5), nullable=True),
    Column("sms_auto_import", Boolean, nullable=False),
    Column("sms_allowed_senders", JSON, nullable=False, server_default="[]"),
    # Profile.version: written under the row lock of the update, so it only grows.
    Column("version", BigInteger, nullable=False, server_default="1"),
    Column("create_time", UtcDateTime, nullable=False),
    Column("update_time", UtcDateTime, nullable=False),
)


async def find_profile(session: AsyncSession, user_id: str, *, for_update: bool = False) -> Profile | None:
    """for_update locks the row (PostgreSQL) so concurrent updates apply one after
    the other; SQLite transactions are serialised already (BEGIN IMMEDIATE)."""
    query = select(profiles).where(profiles.c.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return None if row is None else _profile(row)


async def add_profile_if_absent(session: AsyncSession, profile: Profile) -> bool:
    """Insert-if-absent: the signup event and a first read may both create the
    profile, in any order; whichever comes second changes nothing."""
    return await insert_ignore(session, profiles, {"user_id": profile.user_id, **_columns(profile)})


async def save_profile(session: AsyncSession, profile: Profile) -> None:
    await session.execute(
        profiles.update().where(profiles.c.user_id == profile.user_id).values(**_columns(profile))
    )


def _columns(profile: Profile) -> dict[str, Any]:
    notifications = profile.notifications
    return {
        "email": profile.email,
        "display_name": profile.display_name,
        "default_currency": profile.default_currency,
        "time_zone": profile.time_zone,
        "locale": profile.locale,
        "first_day_of_week": profile.first_day_of_week,
        "notification_channels": list(notifications.channels),
        "quiet_hours_start": notifications.quiet_hours_start or None,
        "quiet_hours_end": notifications.quiet_hours_end or None,
        "sms_auto_import": profile.sms_auto_import,
        "sms_allowed_senders": list(profile.sms_allowed_senders),
        "create_time": profile.create_time,
        "update_time": profile.update_time,
        "version": profile.version,
    }


def _profile(row: Row[Any]) -> Profile:
    return Profile(
        user_id=row.user_id,
        email=row.email,
        display_name=row.display_name,
        default_currency=row.default_currency,
        time_zone=row.time_zone,
        locale=row.locale,
        first_day_of_week=row.first_day_of_week,
        notifications=Notifications(
            channels=tuple(row.notification_channels),
            quiet_hours_start=row.quiet_hours_start or "",
            quiet_hours_end=row.quiet_hours_end or "",
        ),
        sms_auto_import=row.sms_auto_import,
        create_time=row.create_time,
        update_time=row.update_time,
        sms_allowed_senders=tuple(row.sms_allowed_senders or ()),
        version=row.version,
    )
