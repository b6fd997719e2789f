"""The templating use cases: rendering a published template (locale fallback,
variables checked, the capped sandbox in worker threads, SMS encoding), previews,
and the operators' versions, publications and rollbacks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from babel import Locale

from services.kit.db.engine import Database
from services.kit.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.kit.domain.timestamps import utcnow
from services.templating import storage
from services.templating.domain import (
    SUBJECT_CHANNELS,
    TemplateId,
    TemplateVersion,
    VersionDraft,
    babel_locale,
    bind_variables,
    check_declaration,
    language_of,
    locale_chain,
    sms_text,
)
from services.templating.rendering import Caps, Renderer, RenderRefused, TemplateInvalid
from services.templating.settings import TemplatingSettings

# Versions GetTemplate returns, newest first.
MAX_VERSIONS_SHOWN = 100


@dataclass(frozen=True)
class WhatsAppMessage:
    name: str
    language: str
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    template: str
    locale: str
    gsm7: bool = False
    segments: int = 0
    whatsapp: WhatsAppMessage | None = None


@dataclass(frozen=True)
class TemplateView:
    template: TemplateId
    published_version: int
    versions: tuple[TemplateVersion, ...] = ()


def caps_of(settings: TemplatingSettings) -> Caps:
    return Caps(
        settings.max_output_bytes,
        settings.max_work_bytes,
        settings.max_loop_iterations,
        settings.max_render_ms,
        settings.max_source_chars,
    )


class Drafts:
    """Checks a version before it is stored: declaration, channel rules, sources
    compiling over the declared variables only, and a render of its sample data."""

    def __init__(self, renderer: Renderer, settings: TemplatingSettings) -> None:
        self.renderer = renderer
        self.settings = settings

    def check(self, draft: VersionDraft) -> None:
        check_declaration(draft.variables, self.settings.max_variables)
        problems = self._channel_problems(draft) + self._source_problems(draft)
        if problems:
            raise InvalidArgument(problems)
        label = draft.template.label(0).replace("@0", " (draft)")
        values = bind_variables(draft.variables, draft.sample, label, prefix="sample")
        try:
            output = self.renderer.render(sources(draft), values, babel_locale(draft.template.locale))
        except RenderRefused as error:
            raise InvalidArgument.of("body", f"rendering the sample data: {error}") from None
        if draft.template.channel == "webhook" and not _is_json(output[1]):
            raise InvalidArgument.of("body", "a webhook body must render to JSON")

    def _channel_problems(self, draft: VersionDraft) -> list[FieldViolation]:
        channel = draft.template.channel
        problems = []
        if channel in SUBJECT_CHANNELS and not draft.subject.strip():
            problems.append(FieldViolation("subject", f"required for {channel}"))
        if channel not in SUBJECT_CHANNELS and draft.subject.strip():
            problems.append(FieldViolation("subject", f"{channel} messages have no subject"))
        if not draft.body.strip():
            problems.append(FieldViolation("body", "required"))
        if (channel == "whatsapp") != (draft.whatsapp is not None):
            problems.append(FieldViolation("whatsapp", "required for whatsapp, and only there"))
        if draft.whatsapp is not None and not (draft.whatsapp.name and draft.whatsapp.language):
            problems.append(FieldViolation("whatsapp", "the provider's template name and language"))
        return problems

    def _source_problems(self, draft: VersionDraft) -> list[FieldViolation]:
        declared = [spec.name for spec in draft.variables]
        fields = [("subject", draft.subject), ("body", draft.body)]
        if draft.whatsapp is not None:
            fields += [(f"whatsapp.parameters[{i}]", p) for i, p in enumerate(draft.whatsapp.parameters)]
        problems = []
        for name, source in fields:
            try:
                self.renderer.check(source, declared)
            except TemplateInvalid as error:
                problems.append(FieldViolation(name, str(error)))
        return problems


def formatting_locale(requested: str, template_locale: str) -> Locale:
    """Money and dates follow the requested region when the text is in its language
    (en-IN on the en template: 12,34,567.50), else the template's own locale (no French
    digits in an English text)."""
    same_language = language_of(requested) == language_of(template_locale)
    return babel_locale(requested if same_language else template_locale, template_locale)


def sources(draft: VersionDraft) -> list[str]:
    """What one render renders: subject, body, then each WhatsApp parameter."""
    return [draft.subject, draft.body, *(draft.whatsapp.parameters if draft.whatsapp else ())]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


class Templates:
    def __init__(self, db: Database, settings: TemplatingSettings) -> None:
        self.db = db
        self.settings = settings
        self.renderer = Renderer(caps_of(settings))
        self.drafts = Drafts(self.renderer, settings)
        self.pool = ThreadPoolExecutor(settings.render_threads, thread_name_prefix="render")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ rendering

    async def render(self, key: str, channel: str, locale: str, variables: Mapping[str, Any]) -> Rendered:
        chain = locale_chain(locale, self.settings.default_locale)
        async with self.db.read() as db:
            found = {
                v.draft.template.locale: v for v in await storage.published_versions(db, key, channel, chain)
            }
        chosen = next((found[candidate] for candidate in chain if candidate in found), None)
        if chosen is None:
            raise NotFound("template", f"{key}/{channel}/{locale}")
        values = bind_variables(chosen.draft.variables, variables, chosen.label)
        return await self._render(chosen, values, formatting_locale(locale, chosen.draft.template.locale))

    async def preview(
        self, template: TemplateId, version: int, variables: Mapping[str, Any] | None, format_locale: str
    ) -> Rendered:
        async with self.db.read() as db:
            found = await storage.get_version(db, template, version)
        if found is None:
            raise NotFound("template version", template.label(version))
        given = found.draft.sample if variables is None else variables
        values = bind_variables(found.draft.variables, given, found.label)
        return await self._render(
            found, values, babel_locale(format_locale or template.locale, template.locale)
        )

    async def _render(self, version: TemplateVersion, values: dict[str, Any], locale: Locale) -> Rendered:
        draft = version.draft
        job = asyncio.get_running_loop().run_in_executor(
            self.pool, self.renderer.render, sources(draft), values, locale
        )
        # The sandbox stops itself at max_render_ms; this bounds the wait for a free thread too.
        timeout = 2 * self.settings.max_render_ms / 1000 + 1
        try:
            subject, body, *parameters = await asyncio.wait_for(job, timeout)
        except (RenderRefused, TimeoutError) as error:
            reason = str(error) or "timed out"
            raise FailedPrecondition(
                f"{version.label} ({draft.template.locale}) was not rendered: {reason}"
            ) from None
        rendered = Rendered(subject, body, version.label, draft.template.locale)
        if draft.template.channel == "sms":
            sms = self.settings.sms
            text = sms_text(body, sms.replacements, sms.gsm7_safe)
            return Rendered(subject, text.body, version.label, rendered.locale, text.gsm7, text.segments)
        if draft.whatsapp is not None:
            message = WhatsAppMessage(draft.whatsapp.name, draft.whatsapp.language, tuple(parameters))
            return Rendered(subject, body, version.label, rendered.locale, whatsapp=message)
        return rendered

    # ------------------------------------------------------------ operators

    async def list(
        self, filters: dict[str, str], after: tuple[str, str, str] | None, size: int
    ) -> tuple[list[TemplateView], bool]:
        async with self.db.read() as db:
            found = await storage.list_templates(db, filters, after, size + 1)
        return [TemplateView(template, published) for template, published in found[:size]], len(found) > size

    async def get(self, template: TemplateId) -> TemplateView:
        async with self.db.read() as db:
            exists, published = await storage.pointer(db, template)
            versions = await storage.versions_of(db, template, MAX_VERSIONS_SHOWN) if exists else []
        if not exists:
            raise NotFound("template", f"{template.key}/{template.channel}/{template.locale}")
        return TemplateView(template, published, tuple(versions))

    async def create_version(self, draft: VersionDraft) -> TemplateVersion:
        await asyncio.get_running_loop().run_in_executor(self.pool, self.drafts.check, draft)
        now = utcnow()
        async with self.db.transaction() as session:
            await storage.add_template(session, draft.template, now)
            await storage.lock_template(session, draft.template)
            version = await storage.next_version(session, draft.template)
            return await storage.insert_version(session, draft, version, "draft", now)

    async def publish(self, template: TemplateId, version: int) -> TemplateView:
        now = utcnow()
        async with self.db.transaction() as session:
            exists, current = await storage.lock_template(session, template)
            if not exists or await storage.get_version(session, template, version) is None:
                raise NotFound("template version", template.label(version))
            if current != version:
                await storage.publish(session, template, version, now)
        return await self.get(template)

    async def rollback(self, template: TemplateId) -> TemplateView:
        async with self.db.transaction() as session:
            exists, _ = await storage.lock_template(session, template)
            if not exists:
                raise NotFound("template", f"{template.key}/{template.channel}/{template.locale}")
            if await storage.roll_back(session, template, utcnow()) is None:
                raise FailedPrecondition("no earlier published version to roll back to")
        return await self.get(template)

    # ------------------------------------------------------------ defaults

    async def load_defaults(self, drafts: Sequence[VersionDraft]) -> int:
        """Each default absent from the database becomes version 1, published; present
        ones are left alone (an operator's later versions win). Returns how many were added.
        One transaction for all of them: a restart (everything present) costs one commit,
        and a replica racing this one waits on each key and then finds it taken."""
        for draft in drafts:
            try:
                self.drafts.check(draft)
            except InvalidArgument as error:  # a shipped file is wrong: stop the start, say where
                where = f"{draft.template.key}/{draft.template.channel}/{draft.template.locale}"
                problems = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
                raise ValueError(f"default template {where}: {problems}") from None
        added = 0
        now = utcnow()
        async with self.db.transaction() as session:
            for draft in drafts:
                if not await storage.add_template(session, draft.template, now):
                    continue
                await storage.insert_version(session, draft, 1, "draft", now)
                await storage.publish(session, draft.template, 1, now)
                added += 1
        return added
