"""Templating's use cases on a migrated SQLite file and a fresh PostgreSQL database:
defaults load once (idempotently, as version 1 published), renders fall back through
the locale chain, published versions never change, publish moves the pointer and
rollback steps back through what was published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.kit.db import migrations
from services.kit.db.engine import Database
from services.kit.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from services.templating.defaults import load_drafts, templates_dir
from services.templating.domain import TemplateId, VariableSpec, VersionDraft
from services.templating.settings import TemplatingMeshSettings
from services.templating.usecases import Templates

SETTINGS = TemplatingMeshSettings()
DEFAULTS = load_drafts(templates_dir(SETTINGS.templating.templates_dir))
SMS = TemplateId("budget.threshold", "sms", "en")
SAMPLE = next(d for d in DEFAULTS if d.template == SMS).sample


@pytest.fixture
async def templates(database_url: str, tmp_path: Path) -> AsyncIterator[Templates]:
    settings = TemplatingMeshSettings(database_url=database_url, data_dir=tmp_path)
    # Alembic's env runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(migrations.upgrade, "templating", settings)
    db = Database.for_service(settings, "templating")
    templates = Templates(db, settings.templating)
    assert await templates.load_defaults(DEFAULTS) == len(DEFAULTS)
    yield templates
    templates.close()
    await db.dispose()


def _draft(body: str) -> VersionDraft:
    variables = next(d for d in DEFAULTS if d.template == SMS).variables
    return VersionDraft(SMS, "", body, variables, SAMPLE)


async def test_defaults_load_once_as_published_version_one(templates: Templates) -> None:
    assert await templates.load_defaults(DEFAULTS) == 0  # a restart, or a second replica
    view = await templates.get(SMS)
    assert view.published_version == 1
    assert [(v.version, v.state) for v in view.versions] == [(1, "published")]
    listed, more = await templates.list({"key": "budget.threshold"}, None, 100)
    assert not more
    assert {(v.template.channel, v.template.locale) for v in listed} == {
        ("in_app", "en"), ("in_app", "hi"), ("email", "en"), ("sms", "en"), ("sms", "hi"),
        ("whatsapp", "en"), ("webhook", "en"),
    }  # fmt: skip
    first, more = await templates.list({}, None, 5)
    last = first[-1].template
    second, _ = await templates.list({}, (last.key, last.channel, last.locale), 5)
    assert more and len(first) == len(second) == 5
    ordered = [(v.template.key, v.template.channel, v.template.locale) for v in first + second]
    assert ordered == sorted(set(ordered))  # pages follow each other, no overlap


async def test_render_falls_back_through_the_locales(templates: Templates) -> None:
    hindi = await templates.render("budget.threshold", "sms", "hi-IN", SAMPLE)
    assert (hindi.locale, hindi.template, hindi.gsm7) == ("hi", "budget.threshold@1", False)
    assert "₹12,34,567.50" in hindi.body
    indian_english = await templates.render("budget.threshold", "sms", "en-IN", SAMPLE)
    assert indian_english.locale == "en" and indian_english.gsm7 and indian_english.segments == 1
    assert "Rs.12,34,567.50" in indian_english.body  # en-IN grouping, GSM-7 safe
    whatsapp = await templates.render("budget.threshold", "whatsapp", "fr", SAMPLE)
    assert whatsapp.whatsapp is not None and whatsapp.whatsapp.name == "budget_threshold_alert"
    assert whatsapp.whatsapp.parameters == ("Groceries", "85.5", "₹1,234,567.50", "₹1,450,000.00")
    with pytest.raises(NotFound):
        await templates.render("budget.unknown", "sms", "en", SAMPLE)
    with pytest.raises(InvalidArgument, match="budget"):
        await templates.render("budget.threshold", "sms", "en", {**SAMPLE, "budget": None} | {"extra": "x"})


async def test_publish_and_rollback_move_a_pointer_over_immutable_versions(templates: Templates) -> None:
    original = (await templates.get(SMS)).versions[0]
    draft = await templates.create_version(_draft("v2: {{ budget }} at {{ percent|number }}%"))
    assert (draft.version, draft.state) == (2, "draft")
    assert (await templates.render("budget.threshold", "sms", "en", SAMPLE)).template == "budget.threshold@1"
    preview = await templates.preview(SMS, 2, None, "")
    assert preview.body == "v2: Groceries at 85.5%" and preview.template == "budget.threshold@2"

    await templates.publish(SMS, 2)
    third = await templates.create_version(_draft("v3: {{ budget }}"))
    await templates.publish(SMS, third.version)
    assert (await templates.render("budget.threshold", "sms", "en", SAMPLE)).body == "v3: Groceries"

    assert (await templates.rollback(SMS)).published_version == 2
    assert (await templates.render("budget.threshold", "sms", "en", SAMPLE)).body == "v2: Groceries at 85.5%"
    assert (await templates.rollback(SMS)).published_version == 1
    with pytest.raises(FailedPrecondition, match="roll back"):
        await templates.rollback(SMS)

    view = await templates.get(SMS)
    assert [(v.version, v.state) for v in view.versions] == [
        (3, "published"),
        (2, "published"),
        (1, "published"),
    ]
    assert view.versions[2].draft == original.draft  # published versions never change
    with pytest.raises(NotFound):
        await templates.publish(SMS, 9)


async def test_a_bad_draft_is_not_stored(templates: Templates) -> None:
    with pytest.raises(InvalidArgument):
        await templates.create_version(_draft("{{ ''.__class__.__mro__ }}"))
    with pytest.raises(InvalidArgument):
        await templates.create_version(
            VersionDraft(SMS, "", "{{ x }}", (VariableSpec("x", "string"),), {"x": "a" * 3000})
        )
    assert [v.version for v in (await templates.get(SMS)).versions] == [1]


async def test_a_default_that_does_not_render_stops_the_load(templates: Templates) -> None:
    broken = VersionDraft(TemplateId("new.key", "sms", "en"), "", "{{ missing }}", (), {})
    with pytest.raises(ValueError, match=r"new.key/sms/en: body: .*missing"):
        await templates.load_defaults([broken])


async def test_concurrent_drafts_get_distinct_numbers_and_replicas_load_defaults_once(
    templates: Templates,
) -> None:
    drafts = await asyncio.gather(
        *(templates.create_version(_draft(f"v{i}: {{{{ budget }}}}")) for i in range(6))
    )
    assert sorted(draft.version for draft in drafts) == [2, 3, 4, 5, 6, 7]
    name = (VariableSpec("name", "string"),)
    fresh = [
        VersionDraft(TemplateId(f"race.key{i}", "sms", "en"), "", "Hi {{ name }}", name, {"name": "A"})
        for i in range(5)
    ]
    added = await asyncio.gather(templates.load_defaults(fresh), templates.load_defaults(fresh))
    assert sum(added) == len(fresh)
    for draft in fresh:
        assert [v.version for v in (await templates.get(draft.template)).versions] == [1]
