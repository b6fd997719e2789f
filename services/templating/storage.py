"""templating's tables and the queries on them.

- `templates`: one row per (key, channel, locale) with its published pointer.
- `template_versions`: every version, never updated once published (only a draft's
  state and publish time change, once, when it is first published).
- `template_publications`: each Publish, in order; Rollback marks the newest one rolled
  back and points at the one before it, so rollbacks step back through history."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.kit.db.engine import Queryable, UtcDateTime
from services.kit.db.sql import insert_ignore
from services.templating.domain import TemplateId, TemplateVersion, VariableSpec, VersionDraft, WhatsAppSpec

metadata = MetaData()
ID_COLUMNS = ("key", "channel", "locale")


def _id_columns() -> list[Column[Any]]:
    return [Column("key", String(100), nullable=False), Column("channel", String(16), nullable=False),
            Column("locale", String(16), nullable=False)]  # fmt: skip


templates = Table(
    "templates",
    metadata,
    *_id_columns(),
    Column("published_version", Integer, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint(*ID_COLUMNS),
)
template_versions = Table(
    "template_versions",
    metadata,
    *_id_columns(),
    Column("version", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("variables", Text, nullable=False),
    Column("sample", Text, nullable=False),
    Column("whatsapp", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime, nullable=True),
    PrimaryKeyConstraint(*ID_COLUMNS, "version"),
)
template_publications = Table(
    "template_publications",
    metadata,
    *_id_columns(),
    Column("seq", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("rolled_back", Boolean, nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint(*ID_COLUMNS, "seq"),
)


def _of(table: Table, template: TemplateId) -> Any:
    return and_(
        table.c.key == template.key, table.c.channel == template.channel, table.c.locale == template.locale
    )


def version_of(row: Any) -> TemplateVersion:
    whatsapp = json.loads(row.whatsapp) if row.whatsapp else None
    draft = VersionDraft(
        TemplateId(row.key, row.channel, row.locale),
        row.subject,
        row.body,
        tuple(VariableSpec(**spec) for spec in json.loads(row.variables)),
        json.loads(row.sample),
        WhatsAppSpec(whatsapp["name"], whatsapp["language"], tuple(whatsapp["parameters"]))
        if whatsapp
        else None,
    )
    return TemplateVersion(draft, row.version, row.state, row.created_at, row.published_at)


# ---------------------------------------------------------------- reads


async def published_versions(
    db: Queryable, pairs: Collection[tuple[str, str]], locales: Collection[str]
) -> list[TemplateVersion]:
    """The published version of each (key, channel) of these pairs in each of these
    locales that has one: one statement for a whole batch of renders."""
    statement = (
        select(template_versions)
        .join(
            templates,
            and_(
                templates.c.key == template_versions.c.key,
                templates.c.channel == template_versions.c.channel,
                templates.c.locale == template_versions.c.locale,
                templates.c.published_version == template_versions.c.version,
            ),
        )
        .where(
            tuple_(templates.c.key, templates.c.channel).in_(list(pairs)),
            templates.c.locale.in_(list(locales)),
        )
    )
    return [version_of(row) for row in (await db.execute(statement)).all()]


async def get_version(db: Queryable, template: TemplateId, version: int) -> TemplateVersion | None:
    statement = select(template_versions).where(
        _of(template_versions, template), template_versions.c.version == version
    )
    row = (await db.execute(statement)).first()
    return version_of(row) if row is not None else None


async def versions_of(db: Queryable, template: TemplateId, limit: int) -> list[TemplateVersion]:
    statement = (
        select(template_versions)
        .where(_of(template_versions, template))
        .order_by(template_versions.c.version.desc())
        .limit(limit)
    )
    return [version_of(row) for row in (await db.execute(statement)).all()]


async def pointer(db: Queryable, template: TemplateId) -> tuple[bool, int]:
    """(whether the template exists, its published version or 0)."""
    row = (await db.execute(select(templates.c.published_version).where(_of(templates, template)))).first()
    return (False, 0) if row is None else (True, row.published_version or 0)


async def list_templates(
    db: Queryable, filters: dict[str, str], after: tuple[str, str, str] | None, limit: int
) -> list[tuple[TemplateId, int]]:
    statement = select(
        templates.c.key, templates.c.channel, templates.c.locale, templates.c.published_version
    )
    for name, value in filters.items():
        statement = statement.where(templates.c[name] == value)
    if after is not None:
        statement = statement.where(tuple_(templates.c.key, templates.c.channel, templates.c.locale) > after)
    statement = statement.order_by(templates.c.key, templates.c.channel, templates.c.locale).limit(limit)
    rows = (await db.execute(statement)).all()
    return [(TemplateId(row.key, row.channel, row.locale), row.published_version or 0) for row in rows]


# ---------------------------------------------------------------- writes


async def add_template(session: AsyncSession, template: TemplateId, now: datetime) -> bool:
    """True when the template is new (a racing replica's insert wins, the other skips)."""
    values = {**asdict(template), "published_version": None, "updated_at": now}
    return await insert_ignore(session, templates, values)


async def lock_template(session: AsyncSession, template: TemplateId) -> tuple[bool, int]:
    """The pointer, its row locked (PostgreSQL; SQLite writers hold the database lock)."""
    statement = select(templates.c.published_version).where(_of(templates, template)).with_for_update()
    row = (await session.execute(statement)).first()
    return (False, 0) if row is None else (True, row.published_version or 0)


async def insert_version(
    session: AsyncSession, draft: VersionDraft, version: int, state: str, now: datetime
) -> TemplateVersion:
    whatsapp = draft.whatsapp
    row = {
        **asdict(draft.template),
        "version": version,
        "state": state,
        "subject": draft.subject,
        "body": draft.body,
        "variables": json.dumps([asdict(spec) for spec in draft.variables]),
        "sample": json.dumps(draft.sample, sort_keys=True),
        "whatsapp": json.dumps({**asdict(whatsapp), "parameters": list(whatsapp.parameters)})
        if whatsapp
        else "",
        "created_at": now,
        "published_at": now if state == "published" else None,
    }
    await session.execute(template_versions.insert().values(**row))
    return TemplateVersion(draft, version, state, now, row["published_at"])


async def next_version(session: AsyncSession, template: TemplateId) -> int:
    statement = select(func.coalesce(func.max(template_versions.c.version), 0)).where(
        _of(template_versions, template)
    )
    return int((await session.execute(statement)).scalar_one()) + 1


async def publish(session: AsyncSession, template: TemplateId, version: int, now: datetime) -> None:
    """Marks the version published (the first time) and points the template at it."""
    await session.execute(
        update(template_versions)
        .where(_of(template_versions, template), template_versions.c.version == version)
        .where(template_versions.c.state == "draft")
        .values(state="published", published_at=now)
    )
    seq_query = select(func.coalesce(func.max(template_publications.c.seq), 0)).where(
        _of(template_publications, template)
    )
    seq = int((await session.execute(seq_query)).scalar_one()) + 1
    await session.execute(
        template_publications.insert().values(
            **asdict(template), seq=seq, version=version, rolled_back=False, published_at=now
        )
    )
    await _point(session, template, version, now)


async def roll_back(session: AsyncSession, template: TemplateId, now: datetime) -> int | None:
    """Points the template at the publication before the newest one still standing;
    None when there is none (nothing to roll back to)."""
    statement = (
        select(template_publications.c.seq, template_publications.c.version)
        .where(_of(template_publications, template), template_publications.c.rolled_back.is_(False))
        .order_by(template_publications.c.seq.desc())
        .limit(2)
    )
    standing = (await session.execute(statement)).all()
    if len(standing) < 2:
        return None
    await session.execute(
        update(template_publications)
        .where(_of(template_publications, template), template_publications.c.seq == standing[0].seq)
        .values(rolled_back=True)
    )
    await _point(session, template, standing[1].version, now)
    return int(standing[1].version)


async def _point(session: AsyncSession, template: TemplateId, version: int, now: datetime) -> None:
    await session.execute(
        update(templates).where(_of(templates, template)).values(published_version=version, updated_at=now)
    )
