"""Templating's rules in plain Python: the capped sandbox refuses the escapes people
try (attribute walks, huge outputs, endless loops) within its caps; every default
template renders in each of its locales with its file's sample data; locale fallback,
Indian grouping, GSM-7 and segment counts; missing and extra variables refused."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest
from babel import Locale

from services.kit.domain.errors import InvalidArgument
from services.templating.defaults import TemplateFileError, load_drafts, templates_dir
from services.templating.domain import (
    Money,
    TemplateId,
    VariableSpec,
    VersionDraft,
    WhatsAppSpec,
    babel_locale,
    bind_variables,
    canonical_locale,
    locale_chain,
    sms_text,
)
from services.templating.rendering import Renderer, RenderRefused, TemplateInvalid
from services.templating.settings import TemplatingSettings
from services.templating.usecases import Drafts, caps_of, sources

SETTINGS = TemplatingSettings()
CAPS = caps_of(SETTINGS)
EN_IN = Locale.parse("en_IN")
DEFAULTS = load_drafts(templates_dir(SETTINGS.templates_dir))
# Every refusal must come well within the render time cap (plus compile time), counted as the
# CPU time of the rendering thread like the cap itself, so a loaded machine does not fail it.
REFUSED_WITHIN_SECONDS = CAPS.max_render_ms / 1000 + 0.5
# What a refused template may allocate on the way: a few values of max_output_bytes.
MAX_PEAK_BYTES = 2_000_000

ESCAPES = {
    "mro walk": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals via self": "{{ self.__init__.__globals__ }}",
    "globals via range": "{{ range.__globals__['os'] }}",
    "globals via a filter's function": "{{ (1|string).__class__ }}",
    "jinja's cycler": "{{ cycler.__init__.__globals__.os }}",
    "lipsum's globals": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "request-style config": "{{ config.items() }}",
    "a huge repetition": "{{ 'a' * 50000000 }}",
    "a huge list": "{{ [1] * 16000 * 16000 }}",
    "a huge power": "{{ 9 ** (9 ** 9) }}",
    "printf padding": "{{ '%99999999s' % 'a' }}",
    "str.format padding": "{{ '{:>50000000}'.format(1) }}",
    "ljust padding": "{{ 'a'.ljust(50000000) }}",
    "doubling by ~": "{% set s = 'a' * 1000 %}" + "{% set s = s ~ s %}" * 30 + "{{ s|length }}",
    "doubling by +": "{% set s = 'a' * 1000 %}" + "{% set s = s + s %}" * 30 + "{{ s|length }}",
    "doubling in set blocks": "{% set s %}aaaaaaaaaa{% endset %}"
    + "{% set s %}{{ s }}{{ s }}{% endset %}" * 30,
    "doubling through macros": "{% macro m(s) %}{{ s }}{{ s }}{% endmacro %}{{ "
    + "m(" * 40
    + "'x'"
    + ")" * 40
    + " }}",
    "a macro buffering a loop": "{% macro m() %}{% for i in range(5000) %}{{ 'a' * 16000 }}{% endfor %}"
    "{% endmacro %}{{ m()|length }}",
    "printing a list of references": "{% set s = 'a' * 16000 %}{{ [" + "s, " * 5000 + "s] }}",
    "concatenating a list of references": "{% set s = 'a' * 16000 %}{{ [" + "s, " * 5000 + "s] ~ '' }}",
    "serialising a list of references": "{% set s = 'a' * 16000 %}{{ [" + "s, " * 5000 + "s]|json }}",
    "replace amplification": "{{ ('a' * 10000)|replace('a', 'a' * 10000) }}",
    "join amplification": "{{ (['a' * 10000] * 1000)|join }}",
    "output over the cap": "{% for i in range(10000) %}{{ 'a' * 1000 }}{% endfor %}",
    "a huge range": "{% for i in range(100000000) %}{% endfor %}",
    "nested loops": "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}",
    "nested loops over strings": "{% for a in 'abcdefghij' %}" * 8 + "{% endfor %}" * 8,
    "endless recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "include": "{% include '/etc/passwd' %}",
    "import": "{% import 'x' as y %}",
    "recursive loop": "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(CAPS)


@pytest.mark.parametrize("name", list(ESCAPES))
def test_the_sandbox_refuses_escapes_and_runaways_within_its_caps(renderer: Renderer, name: str) -> None:
    started = time.thread_time()
    with pytest.raises(RenderRefused):
        renderer.render([ESCAPES[name]], {}, EN_IN)
    assert time.thread_time() - started < REFUSED_WITHIN_SECONDS


@pytest.mark.parametrize("name", list(ESCAPES))
def test_no_escape_allocates_much_memory_before_it_is_refused(renderer: Renderer, name: str) -> None:
    # Compiled first (cached): the parser's own allocations are not the template's.
    with contextlib.suppress(RenderRefused, TemplateInvalid):
        renderer.render([ESCAPES[name]], {}, EN_IN)
    tracemalloc.start()
    try:
        with pytest.raises(RenderRefused):
            renderer.render([ESCAPES[name]], {}, EN_IN)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"{name}: {peak / 1e6:.1f} MB"


def test_a_slow_template_stops_at_the_time_cap() -> None:
    # Within the iteration cap, but each step slow: only the deadline stops it.
    renderer = Renderer(caps_of(TemplatingSettings(max_render_ms=50, max_loop_iterations=1000000)))
    source = "{% for i in range(99999) %}{% for j in range(99999) %}{{ '' }}{% endfor %}{% endfor %}"
    started = time.thread_time()
    with pytest.raises(RenderRefused, match="longer than 50 ms"):
        renderer.render([source], {}, EN_IN)
    assert time.thread_time() - started < 0.5


def test_ordinary_templates_still_work(renderer: Renderer) -> None:
    source = (
        "{% for item in items %}{{ loop.index }}. {{ item.name|upper }} {{ item.amount|money }}"
        "{{ ', ' if not loop.last }}{% endfor %} | {{ 'x' * 3 }} {{ 2 ** 10 }} {{ 7 % 3 }} {{ name ~ '!' }}"
    )
    items = [
        {"name": "rent", "amount": Money(Decimal("20000"), "INR")},
        {"name": "food", "amount": Money(Decimal("1.5"), "USD")},
    ]
    [text] = renderer.render([source], {"items": items, "name": "Asha"}, EN_IN)
    assert text == "1. RENT ₹20,000.00, 2. FOOD $1.50 | xxx 1024 1 Asha!"


def test_money_and_dates_follow_the_locale(renderer: Renderer) -> None:
    values = bind_variables(
        (VariableSpec("spent", "money"), VariableSpec("day", "date")),
        {"spent": {"amount": "1234567.50", "currency": "INR"}, "day": "2026-12-06"},
        "t@1",
    )
    source = ["{{ spent|money }} {{ day|date }}"]
    assert renderer.render(source, values, babel_locale("en-IN")) == ["₹12,34,567.50 6 Dec 2026"]
    assert renderer.render(source, values, babel_locale("en")) == ["₹1,234,567.50 Dec 6, 2026"]
    assert renderer.render(source, values, babel_locale("de-DE"))[0].startswith("1.234.567,50")


def test_locales_fall_back_to_the_language_then_the_default() -> None:
    assert canonical_locale("hi_in") == "hi-IN"
    assert locale_chain("hi-IN", "en") == ["hi-IN", "hi", "en"]
    assert locale_chain("en", "en") == ["en"]
    assert str(babel_locale("xx-YY", "hi")) == "hi"


def test_missing_extra_and_mistyped_variables_are_refused_by_name() -> None:
    declared = (
        VariableSpec("budget", "string"),
        VariableSpec("spent", "money"),
        VariableSpec("note", "string", required=False),
    )
    with pytest.raises(InvalidArgument) as refused:
        bind_variables(
            declared, {"spent": {"amount": 12.5, "currency": "INR"}, "pin": "1234"}, "budget.threshold@2"
        )
    fields = {violation.field: violation.description for violation in refused.value.violations}
    assert set(fields) == {"variables.budget", "variables.pin", "variables.spent"}
    assert "required by budget.threshold@2" in fields["variables.budget"]
    assert "not declared" in fields["variables.pin"]
    assert "decimal string" in fields["variables.spent"]  # never a float
    assert "budget" in refused.value.message and "pin" in refused.value.message
    bound = bind_variables(
        declared, {"budget": "Food", "spent": {"amount": "12.50", "currency": "inr"}}, "t@1"
    )
    assert bound["spent"] == Money(Decimal("12.50"), "INR")


@pytest.mark.parametrize(
    ("body", "gsm7", "segments", "sent"),
    [
        ("Paid ₹500 “now”", True, 1, 'Paid Rs.500 "now"'),
        ("a" * 160, True, 1, "a" * 160),
        ("a" * 161, True, 2, "a" * 161),
        ("a" * 306, True, 2, "a" * 306),
        ("a" * 307, True, 3, "a" * 307),
        ("[" * 80, True, 1, "[" * 80),  # extension characters take two septets
        ("[" * 81, True, 2, "[" * 81),
        ("बजट ₹500", False, 1, "बजट ₹500"),  # Hindi stays UCS-2, ₹ kept
        ("ब" * 70, False, 1, "ब" * 70),
        ("ब" * 71, False, 2, "ब" * 71),
        ("ब" * 135, False, 3, "ब" * 135),
        ("😀" * 35, False, 1, "😀" * 35),  # two UTF-16 units each
        ("😀" * 36, False, 2, "😀" * 36),
    ],
)
def test_sms_bodies_report_their_encoding_and_segments(
    body: str, gsm7: bool, segments: int, sent: str
) -> None:
    text = sms_text(body, SETTINGS.sms.replacements, SETTINGS.sms.gsm7_safe)
    assert (text.gsm7, text.segments, text.body) == (gsm7, segments, sent)


def test_without_safe_mode_the_rupee_sign_makes_it_ucs2() -> None:
    text = sms_text("Paid ₹500", SETTINGS.sms.replacements, safe_mode=False)
    assert (text.gsm7, text.body) == (False, "Paid ₹500")


def test_the_defaults_cover_every_source_channel_and_the_alerts_in_hindi() -> None:
    keys = {draft.template.key for draft in DEFAULTS}
    alerts = {
        "budget.threshold", "budget.projected_overspend", "expense.large", "expense.duplicate",
        "bill.due", "bill.overdue", "subscription.price_increase",
    }  # fmt: skip
    others = {
        "user.welcome", "user.verify_email", "auth.new_device", "auth.password_changed",
        "auth.sessions_revoked", "auth.password_reset", "report.monthly",
    }  # fmt: skip
    # The ds service's insight sentences: shown in the app only.
    insights = {
        "insight.projection", "insight.category_anomaly", "insight.trend", "insight.category_change",
        "insight.subscription",
    }  # fmt: skip
    # Notification's own messages: a number's one-time code (SMS and WhatsApp only) and the
    # daily digest (every channel but the inbox, which has each item already).
    notification_own = {"contact.verify_code", "notification.digest"}
    assert keys == alerts | others | insights | notification_own
    present = {(d.template.key, d.template.channel, d.template.locale) for d in DEFAULTS}
    for key in insights:
        assert {(key, "in_app", "en"), (key, "in_app", "hi")} <= present
    assert {(c, "en") for k, c, _ in present if k == "contact.verify_code"} == {
        ("sms", "en"),
        ("whatsapp", "en"),
    }
    for key in keys - insights - notification_own:
        for channel in ("in_app", "email", "sms", "whatsapp", "webhook"):
            assert (key, channel, "en") in present
    for key in alerts:
        assert {(key, "sms", "hi"), (key, "in_app", "hi")} <= present


@pytest.mark.parametrize(
    "draft", DEFAULTS, ids=lambda d: f"{d.template.key}/{d.template.channel}/{d.template.locale}"
)
def test_every_default_template_renders_with_its_sample_data(renderer: Renderer, draft: VersionDraft) -> None:
    Drafts(renderer, SETTINGS).check(draft)
    values = bind_variables(draft.variables, draft.sample, "default")
    subject, body, *parameters = renderer.render(sources(draft), values, babel_locale(draft.template.locale))
    assert body and "{{" not in body and "{%" not in body
    assert bool(subject) == (draft.template.channel in ("in_app", "email"))
    if draft.whatsapp is not None:
        assert len(parameters) == len(draft.whatsapp.parameters) and all(parameters)
    if draft.template.locale == "hi":
        assert any("\u0900" <= char <= "\u097f" for char in body)  # Devanagari


def _draft(body: str, **changes: object) -> VersionDraft:
    fields: dict[str, object] = {
        "template": TemplateId("test.key", "sms", "en"),
        "subject": "",
        "body": body,
        "variables": (VariableSpec("name", "string"),),
        "sample": {"name": "Asha"},
        "whatsapp": None,
    }
    fields.update(changes)
    return VersionDraft(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("draft", "field"),
    [
        (_draft("Hi {{ nme }}"), "body"),  # an undeclared variable
        (_draft("Hi {{ name"), "body"),  # a syntax error
        (_draft("{{ 'a' * 50000000 }}"), "body"),  # fails its sample render
        (_draft("Hi", subject="Hello"), "subject"),  # sms has no subject
        (_draft("Hi", template=TemplateId("test.key", "email", "en")), "subject"),
        (_draft("Hi", template=TemplateId("test.key", "whatsapp", "en")), "whatsapp"),
        (_draft("Hi", whatsapp=WhatsAppSpec("x", "en", ())), "whatsapp"),
        (_draft("not json", template=TemplateId("test.key", "webhook", "en")), "body"),
        (_draft("Hi {{ name }}", sample={}), "sample.name"),
        (_draft("Hi", variables=(VariableSpec("Bad-Name", "string"),), sample={}), "variables[0].name"),
        (_draft("Hi", variables=(VariableSpec("n", "float"),), sample={}), "variables[0].type"),
    ],
)
def test_a_bad_draft_is_refused_naming_the_field(renderer: Renderer, draft: VersionDraft, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        Drafts(renderer, SETTINGS).check(draft)
    assert field in [violation.field for violation in refused.value.violations]


def test_an_optional_variable_may_be_left_out(renderer: Renderer) -> None:
    draft = next(d for d in DEFAULTS if (d.template.key, d.template.channel) == ("expense.large", "email"))
    sample = {name: value for name, value in draft.sample.items() if name != "typical"}
    values = bind_variables(draft.variables, sample, "expense.large@1")
    _, body = renderer.render([draft.subject, draft.body], values, babel_locale("en"))
    assert "usual" not in body and "₹84,999.00 at Croma" in body


def test_a_broken_default_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text('key = "a.b"\n[channels.sms.en]\nbody = "hi"\n')
    (tmp_path / "bad.toml").write_text('key = "a.c"\n[channels.fax.en]\nbody = "hi"\n')
    with pytest.raises(TemplateFileError, match=r"bad\.toml: .*fax"):
        load_drafts(tmp_path)
    (tmp_path / "bad.toml").unlink()
    [draft] = load_drafts(tmp_path)
    assert (draft.template, draft.body, draft.variables) == (TemplateId("a.b", "sms", "en"), "hi", ())


MONTHLY = [draft for draft in DEFAULTS if draft.template.key == "report.monthly"]


@pytest.mark.parametrize("draft", MONTHLY, ids=lambda d: f"{d.template.channel}/{d.template.locale}")
def test_the_monthly_report_renders_without_a_previous_month_or_budgets(
    renderer: Renderer, draft: VersionDraft
) -> None:
    """report.monthly_ready has no change for a currency new this month, and no budgets'
    outcome yet: those variables are optional, and their sentences drop out."""
    sample = {
        name: value for name, value in draft.sample.items() if not name.startswith(("change", "budget"))
    }
    values = bind_variables(draft.variables, sample, "default")
    _subject, body, *parameters = renderer.render(sources(draft), values, babel_locale(draft.template.locale))
    assert body and "month before" not in body and "Budgets" not in body
    assert "48,250.75" in body or "48250.75" in body or draft.template.channel == "whatsapp"
    if draft.whatsapp is not None:
        assert all(parameters)


@pytest.mark.parametrize(
    ("channel", "locale"), [("in_app", "en"), ("email", "en"), ("sms", "en"), ("in_app", "hi")]
)
def test_a_large_expense_without_merchant_or_category_reads_whole(
    renderer: Renderer, channel: str, locale: str
) -> None:
    """Billing sends merchant "" and category "" for an uncategorized expense with no
    merchant: no "at  ()" dangling in the title or the body."""
    draft = next(
        d
        for d in DEFAULTS
        if (d.template.key, d.template.channel, d.template.locale) == ("expense.large", channel, locale)
    )
    values = bind_variables(
        draft.variables, {**draft.sample, "merchant": "", "category": ""}, "expense.large@1"
    )
    subject, body = renderer.render([draft.subject, draft.body], values, babel_locale(locale))
    for text in (subject, body):
        assert "()" not in text and "  " not in text.strip() and not text.rstrip().endswith((" at", "पर")), (
            text
        )
    assert "84,999" in body and "usual" not in body
