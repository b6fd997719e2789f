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
from services.kit.domain.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
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
class RenderCall:
    key: str
    channel: str
    locale: str
    variables: Mapping[str, Any]


@dataclass(frozen=True)
class RenderJob:
    version: TemplateVersion
    values: dict[str, Any]
    locale: Locale


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


def _job(
    call: RenderCall, chain: Sequence[str], published: Mapping[tuple[str, str, str], TemplateVersion]
) -> RenderJob | DomainError:
    """What rendering the call takes (its template after locale fallback, its variables
    checked), or why it cannot be rendered."""
    keys = ((call.key, call.channel, locale) for locale in chain)
    chosen = next((published[key] for key in keys if key in published), None)
    if chosen is None:
        return NotFound("template", f"{call.key}/{call.channel}/{call.locale}")
    try:
        values = bind_variables(chosen.draft.variables, call.variables, chosen.label)
    except InvalidArgument as error:
        return error
    return RenderJob(chosen, values, formatting_locale(call.locale, chosen.draft.template.locale))


def _raised(results: Sequence[Rendered | DomainError]) -> Rendered:
    """The one render of a single call, its refusal raised."""
    (result,) = results
    if isinstance(result, DomainError):
        raise result
    return result


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
        return _raised(await self.render_many([RenderCall(key, channel, locale, variables)]))

    async def render_many(self, calls: Sequence[RenderCall]) -> list[Rendered | DomainError]:
        """Each call's published template (after locale fallback) rendered with its
        variables, or the error that refused it: one read for the batch, one worker
        thread hop, a refusal of one call leaving the others alone."""
        chains = [locale_chain(call.locale, self.settings.default_locale) for call in calls]
        async with self.db.read() as db:
            published = await storage.published_versions(
                db,
                {(call.key, call.channel) for call in calls},
                {locale for chain in chains for locale in chain},
            )
        found = {
            (v.draft.template.key, v.draft.template.channel, v.draft.template.locale): v for v in published
        }
        planned = [_job(call, chain, found) for call, chain in zip(calls, chains, strict=True)]
        rendered = iter(await self._render([job for job in planned if isinstance(job, RenderJob)]))
        return [next(rendered) if isinstance(job, RenderJob) else job for job in planned]

    async def preview(
        self, template: TemplateId, version: int, variables: Mapping[str, Any] | None, format_locale: str
    ) -> Rendered:
        async with self.db.read() as db:
            found = await storage.get_version(db, template, version)
        if found is None:
            raise NotFound("template version", template.label(version))
        given = found.draft.sample if variables is None else variables
        values = bind_variables(found.draft.variables, given, found.label)
        locale = babel_locale(format_locale or template.locale, template.locale)
        return _raised(await self._render([RenderJob(found, values, locale)]))

    async def _render(self, jobs: Sequence[RenderJob]) -> list[Rendered | DomainError]:
        """The jobs rendered one after another in a worker thread (each within its own caps)."""
        if not jobs:
            return []
        work = asyncio.get_running_loop().run_in_executor(self.pool, self._render_all, jobs)
        # The sandbox stops each render at max_render_ms; this bounds the wait for a free
        # thread too, and then the templates are not at fault: the caller tries again.
        timeout = len(jobs) * self.settings.max_render_ms / 1000 + 2 * self.settings.max_render_ms / 1000 + 1
        try:
            return await asyncio.wait_for(work, timeout)
        except TimeoutError:
            return [Unavailable("the renderer is busy: try again") for _ in jobs]

    def _render_all(self, jobs: Sequence[RenderJob]) -> list[Rendered | DomainError]:
        return [self._render_one(job) for job in jobs]

    def _render_one(self, job: RenderJob) -> Rendered | DomainError:
        draft = job.version.draft
        try:
            subject, body, *parameters = self.renderer.render(sources(draft), job.values, job.locale)
        except RenderRefused as error:
            return FailedPrecondition(
                f"{job.version.label} ({draft.template.locale}) was not rendered: {error}"
            )
        label, locale = job.version.label, draft.template.locale
        if draft.template.channel == "sms":
            sms = self.settings.sms
            text = sms_text(body, sms.replacements, sms.gsm7_safe)
            return Rendered(subject, text.body, label, locale, text.gsm7, text.segments)
        if draft.whatsapp is not None:
            message = WhatsAppMessage(draft.whatsapp.name, draft.whatsapp.language, tuple(parameters))
            return Rendered(subject, body, label, locale, whatsapp=message)
        return Rendered(subject, body, label, locale)

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
