"""Rendering in Jinja2's ImmutableSandboxedEnvironment, with caps the sandbox lacks
(it alone renders 'a' * 50_000_000 or loops for hours).

Every way a template can grow a value or spin is metered against one budget per render
(a deadline, loop steps, bytes emitted), so a hostile or buggy template stops within
the caps wherever it is:
- `*`, `**`, `%` and `+` go through `call_binop`: repetition and powers are refused
  before they are computed, results are checked against max_output_bytes;
- the parsed template is rewritten before compiling: each `for` iterates through
  `_iterate` (counts steps, checks the deadline), `~` through `_concat`, each
  `{% set %}...{% endset %}` block through `_cap`, literal text through `_text`, and
  every `{{ }}` through `finalize`, so macros and set blocks cannot build huge buffers;
- calls (macros included) and the few filters kept are checked the same way;
- no globals but a capped `range`; no include/import/extends, no recursive loops;
  string methods are an allowlist (no ljust/center/format padding).
The service also runs renders in worker threads with a timeout (usecases.py)."""

from __future__ import annotations

import contextvars
import functools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.filters import FILTERS
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from services.templating.domain import Money

# Largest integer a template may compute (bits): enough for any real figure.
MAX_INT_BITS = 4096
STRING_METHODS = frozenset(
    {"upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "startswith", "endswith"}
)
DATE_METHODS = frozenset({"isoformat", "weekday", "isoweekday"})
DICT_METHODS = frozenset({"items", "keys", "values", "get"})
# Jinja's filters a template may use (the others pad, format or repeat: unbounded).
KEPT_FILTERS = (
    "abs", "capitalize", "default", "d", "first", "last", "length", "count", "lower", "upper",
    "title", "trim", "round", "int", "float", "string", "truncate", "wordcount", "sort", "unique",
    "reverse", "list", "map", "select", "reject", "selectattr", "rejectattr", "dictsort", "items",
    "striptags", "tojson", "batch", "slice", "min", "max", "urlencode",
)  # fmt: skip
FORBIDDEN_NODES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


class RenderRefused(Exception):
    """The template broke a cap, tried something unsafe, or failed."""


class TemplateInvalid(Exception):
    """The source does not compile, or uses what templates may not."""


@dataclass(frozen=True)
class Caps:
    max_output_bytes: int
    max_work_bytes: int
    max_loop_iterations: int
    max_render_ms: int
    max_source_chars: int


def _load_locale_data(locale: Locale) -> None:
    """Babel reads a locale's CLDR data on first use (a few hundred ms of CPU): read it
    before the render clock starts, so a process's first render in a locale is not refused."""
    locale.number_symbols  # noqa: B018 - the attribute read loads the data


class _Budget:
    """One render's meter: loop steps, bytes emitted and the deadline."""

    def __init__(self, caps: Caps, locale: Locale) -> None:
        self.caps = caps
        self.locale = locale
        self.start_clock()
        self.steps = 0
        self.work = 0

    def start_clock(self) -> None:
        # CPU time of the rendering thread, not the wall clock: a loaded machine must not
        # refuse a template that is cheap, while a runaway loop still hits the cap.
        self.deadline = time.thread_time() + self.caps.max_render_ms / 1000

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.caps.max_loop_iterations:
            raise RenderRefused(f"more than {self.caps.max_loop_iterations} loop iterations")
        self.check_time()

    def check_time(self) -> None:
        if time.thread_time() > self.deadline:
            raise RenderRefused(f"took longer than {self.caps.max_render_ms} ms")

    def emitted(self, text: str) -> None:
        self.work += len(text)
        if self.work > self.caps.max_work_bytes:
            raise RenderRefused(f"emitted more than {self.caps.max_work_bytes} bytes")
        self.check_time()

    def sized(self, value: Any) -> Any:
        """The value, unless it (or its text: a list of 10,000 references to one long
        string is small until printed) is longer than max_output_bytes."""
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise RenderRefused(f"an integer beyond {MAX_INT_BITS} bits")
        if _text_size(value, self.caps.max_output_bytes) > self.caps.max_output_bytes:
            raise RenderRefused(f"a value longer than {self.caps.max_output_bytes}")
        return value


def _text_size(value: Any, most: int) -> int:
    """About len(str(value)), without building it; stops counting past `most`."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        items: Iterable[Any] = (*value.keys(), *value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return 32  # numbers (at most MAX_INT_BITS), dates, money, jinja's own objects
    total = 2
    for item in items:
        total += _text_size(item, most - total) + 2
        if total > most:
            break
    return total


_current: contextvars.ContextVar[_Budget] = contextvars.ContextVar("template_budget")


def _budget() -> _Budget:
    budget = _current.get(None)
    if budget is None:  # only rendering sets one; a call outside it is a bug
        raise RenderRefused("no render in progress")
    return budget


# ---------------------------------------------------------------- metered helpers


def _iterate(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > _budget().caps.max_loop_iterations:
        raise RenderRefused(f"range longer than {_budget().caps.max_loop_iterations}")
    return numbers


def _concat(*parts: Any) -> str:
    budget = _budget()
    texts = [str(budget.sized(part)) for part in parts]
    if sum(len(text) for text in texts) > budget.caps.max_output_bytes:
        raise RenderRefused(f"a value longer than {budget.caps.max_output_bytes}")
    return "".join(texts)


def _text(text: str) -> str:
    _budget().emitted(text)
    return text


def _finalize(value: Any) -> str:
    budget = _budget()
    text = str(budget.sized(value))  # StrictUndefined raises here: an unknown name is an error
    budget.emitted(text)
    return text


def _cap(value: str) -> str:
    return _budget().sized(value)


def _join(value: Iterable[Any], separator: str = "") -> str:
    return _concat(*_interleave([str(item) for item in _budget().sized(list(value))], separator))


def _interleave(items: list[str], separator: str) -> list[str]:
    result: list[str] = []
    for index, item in enumerate(items):
        result.extend((separator, item) if index else (item,))
    return result


def _replace(value: str, old: str, new: str) -> str:
    text, old, new = str(value), str(old), str(new)
    grows = text.count(old) * max(0, len(new) - len(old)) if old else len(text) * len(new)
    if len(text) + grows > _budget().caps.max_output_bytes:
        raise RenderRefused(f"a value longer than {_budget().caps.max_output_bytes}")
    return text.replace(old, new)


# ---------------------------------------------------------------- Babel filters


def _money(value: Any, format: str | None = None) -> str:
    if isinstance(value, dict):
        value = Money(Decimal(str(value.get("amount"))), str(value.get("currency")))
    if not isinstance(value, Money):
        raise RenderRefused(f"money filter on a {type(value).__name__}")
    return format_currency(value.amount, value.currency, format=format, locale=_budget().locale)


def _number(value: Any, decimals: int | None = None) -> str:
    number = Decimal(str(value))
    if decimals is not None:
        number = round(number, max(0, min(int(decimals), 10)))
    return format_decimal(number, locale=_budget().locale, decimal_quantization=decimals is not None)


def _date(value: Any, format: str = "medium") -> str:
    if isinstance(value, str):
        value = date.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.date()
    return format_date(value, format=format, locale=_budget().locale)


def _datetime(value: Any, format: str = "medium") -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return format_datetime(value, format=format, locale=_budget().locale)


def _json_value(value: Any) -> Any:
    if isinstance(value, Money):
        return {"amount": str(value.amount), "currency": value.currency}
    if isinstance(value, (Decimal, date, datetime)):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json(value: Any) -> str:
    """Webhook payloads: money as {"amount": "<decimal string>", "currency"}, dates ISO."""
    return json.dumps(value, default=_json_value, ensure_ascii=False, sort_keys=True)


def _metered(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that ticks the budget and has its result size checked."""

    @functools.wraps(function)  # keeps jinja_pass_arg (pass_context and the like)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.check_time()
        for value in args:  # a filter's input is often its output's size
            budget.sized(value)
        return budget.sized(function(*args, **kwargs))

    return filter_


# ---------------------------------------------------------------- environment


class _Guards(NodeTransformer):
    """Routes loops, concatenation, set blocks and literal text through the meter."""

    def _call(self, name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
        return nodes.Call(nodes.Name(name, "load", lineno=lineno), args, [], None, None, lineno=lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = self._call("_iterate", [node.iter], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return self._call("_concat", list(node.nodes), node.lineno)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.Node:
        node = self.generic_visit(node)
        node.filter = nodes.Filter(node.filter, "_cap", [], [], None, None, lineno=node.lineno)
        return node

    def visit_TemplateData(self, node: nodes.TemplateData) -> nodes.Node:
        return self._call("_text", [nodes.Const(node.data, lineno=node.lineno)], node.lineno)


class CappedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        # optimized=False: no constant folding at compile time, outside any budget.
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            optimized=False,
            finalize=_finalize,
            cache_size=0,
            keep_trailing_newline=False,
        )
        self.globals.clear()
        self.globals.update(range=_range, _iterate=_iterate, _concat=_concat, _text=_text)
        self.filters = {name: _metered(FILTERS[name]) for name in KEPT_FILTERS}
        self.filters.update(
            join=_metered(_join),
            replace=_metered(_replace),
            _cap=_cap,
            money=_metered(_money),
            number=_metered(_number),
            date=_metered(_date),
            datetime=_metered(_datetime),
            json=_metered(_json),
        )

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if not callable(value) or isinstance(obj, LoopContext):
            return True
        if isinstance(obj, str):
            return attr in STRING_METHODS
        if isinstance(obj, (date, datetime)):
            return attr in DATE_METHODS
        return isinstance(obj, dict) and attr in DICT_METHODS

    def wrap_str_format(self, value: Any) -> None:
        # str.format pads to any width ('{:>50000000}'): not offered, so the allowlist refuses it.
        return None

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.check_time()
        if operator == "%" and isinstance(left, str):
            raise SecurityError("printf-style formatting is not allowed in templates")
        if operator == "*":
            _check_product(left, right, budget.caps.max_output_bytes)
        if operator == "**":
            _check_power(left, right)
        return budget.sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _budget()
        budget.check_time()
        return budget.sized(super().call(__context, __obj, *args, **kwargs))


def _check_product(left: Any, right: Any, most: int) -> None:
    for sequence, times in ((left, right), (right, left)):
        if (
            isinstance(sequence, (str, list, tuple))
            and isinstance(times, int)
            and len(sequence) * times > most
        ):
            raise RenderRefused(f"a value longer than {most}")
    both_ints = isinstance(left, int) and isinstance(right, int)
    if both_ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise RenderRefused(f"an integer beyond {MAX_INT_BITS} bits")


def _check_power(base: Any, exponent: Any) -> None:
    numbers = isinstance(exponent, (int, Decimal)) and isinstance(base, (int, Decimal))
    if numbers and abs(base) > 1 and abs(exponent) * abs(int(base)).bit_length() > MAX_INT_BITS:
        raise RenderRefused(f"a power beyond {MAX_INT_BITS} bits")


class Renderer:
    """Compiles sources (cached: a published version never changes) and renders them
    within the caps."""

    def __init__(self, caps: Caps) -> None:
        self.caps = caps
        self.environment = CappedEnvironment()
        self._compiled = functools.lru_cache(maxsize=1024)(self._compile)

    def check(self, source: str, declared: Iterable[str]) -> None:
        """Raises TemplateInvalid for a source that does not compile or names a
        variable the version does not declare."""
        tree = self._parse(source)
        unknown = meta.find_undeclared_variables(tree) - set(declared) - {"range"}
        if unknown:
            raise TemplateInvalid(f"uses undeclared variable(s): {', '.join(sorted(unknown))}")
        self._compiled(source)

    def _parse(self, source: str) -> nodes.Template:
        if len(source) > self.caps.max_source_chars:
            raise TemplateInvalid(f"longer than {self.caps.max_source_chars} characters")
        try:
            tree = self.environment.parse(source)
        except TemplateSyntaxError as error:
            raise TemplateInvalid(f"line {error.lineno}: {error.message}") from None
        for node in tree.find_all(FORBIDDEN_NODES):
            raise TemplateInvalid(f"line {node.lineno}: include, import and extends are not allowed")
        for loop in tree.find_all(nodes.For):
            if loop.recursive:
                raise TemplateInvalid(f"line {loop.lineno}: recursive loops are not allowed")
        return tree

    def _compile(self, source: str) -> Any:
        tree = _Guards().visit(self._parse(source))
        tree.set_environment(self.environment)
        return self.environment.from_string(tree)

    def render(self, sources: Sequence[str], variables: Mapping[str, Any], locale: Locale) -> list[str]:
        """Each source rendered with the variables, all within one budget."""
        budget = _Budget(self.caps, locale)
        reset = _current.set(budget)
        try:
            # Compiling (bounded by max_source_chars; cached) is not rendering: the clock
            # starts after it, so a first render's compile and locale loading never count.
            compiled = [self._compiled(source) for source in sources]
            _load_locale_data(locale)
            budget.start_clock()
            results = [self._render_one(template, variables, budget) for template in compiled]
        except RenderRefused:
            raise
        except TemplateInvalid as error:
            raise RenderRefused(str(error)) from None
        except SecurityError as error:
            raise RenderRefused(f"unsafe: {error}") from None
        except UndefinedError as error:
            raise RenderRefused(f"undefined: {error}") from None
        except RecursionError:
            raise RenderRefused("recursion too deep") from None
        except MemoryError:
            raise RenderRefused("out of memory") from None
        except Exception as error:  # a template's own failure (a bad filter argument, 1/0)
            raise RenderRefused(f"failed: {type(error).__name__}: {error}") from None
        finally:
            _current.reset(reset)
        return results

    def _render_one(self, template: Any, variables: Mapping[str, Any], budget: _Budget) -> str:
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(dict(variables)):
            size += len(chunk.encode())
            if size > self.caps.max_output_bytes:
                raise RenderRefused(f"output longer than {self.caps.max_output_bytes} bytes")
            budget.check_time()
            chunks.append(chunk)
        return "".join(chunks).strip()
