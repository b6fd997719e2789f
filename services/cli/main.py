"""em: expense-mesh from a terminal, for a person (add, ls, report, import, export...)
and for an operator (ops health). Every command takes --json; errors are one line on
stderr with a meaningful exit code (errors.py)."""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from services.cli import csvimport
from services.cli.client import DEFAULT_URL, Api, SessionStore, config_dir
from services.cli.errors import EXIT_CODES_HELP, INVALID, NOT_FOUND, PARTIAL, UNAVAILABLE, EmError

console = Console()
BAR_WIDTH = 30


class Context:
    def __init__(self, url: str | None, as_json: bool) -> None:
        self.store = SessionStore(config_dir())
        self.url = url or self.store.load().get("base_url") or DEFAULT_URL
        self.as_json = as_json
        self._api: Api | None = None

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self.url, self.store)
        return self._api

    def emit(self, data: Any, render: Any) -> None:
        """JSON for scripts, else the rich rendering."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            render()


def json_option(command: Any) -> Any:
    """--json on every command as well as on `em` itself."""

    def set_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
        if value:
            ctx.ensure_object(dict)
            ctx.find_root().meta["json"] = True

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=set_json,
        help="Print JSON for scripts.",
    )(command)


def obj() -> Context:
    ctx = click.get_current_context()
    root = ctx.find_root()
    context: Context = root.obj
    context.as_json = context.as_json or root.meta.get("json", False)
    return context


@click.group(
    epilog=f"""\b
Examples:
  em login --email asha@example.com
  em add 450 coffee --category food --date yesterday
  em ls --month 2026-11 --category food
  em report month
  em import bank.csv            # re-run after Ctrl-C: nothing is added twice
  em export --from 2026-01-01 > out.csv
  em ops health --json

{EXIT_CODES_HELP}"""
)
@click.option(
    "--url", envvar="EM_URL", help=f"The gateway (default: the one logged in to, else {DEFAULT_URL})."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.version_option(package_name="expense-mesh", prog_name="em")
@click.pass_context
def cli(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """expense-mesh from the terminal."""
    ctx.obj = Context(url, as_json)


# ------------------------------------------------------------------ session


@cli.command(
    epilog="\b\nExamples:\n  em login --email asha@example.com\n"
    "  EM_PASSWORD=... em login --email asha@example.com"
)
@click.option("--email", prompt=True)
@click.option("--password", envvar="EM_PASSWORD", prompt=True, hide_input=True)
@json_option
def login(email: str, password: str) -> None:
    """Sign in; the refresh token is kept in your config dir (mode 0600)."""
    context = obj()
    user = context.api.log_in(email, password)
    context.emit(
        {"signed_in": True, "user": user, "session_file": str(context.store.path)},
        lambda: console.print(f"Signed in as [bold]{escape(user.get('display_name') or user['email'])}[/]"),
    )


@cli.command(epilog="\b\nExample:\n  em logout")
@json_option
def logout() -> None:
    """End this session and forget its tokens."""
    context = obj()
    context.api.log_out()
    context.emit({"signed_out": True}, lambda: console.print("Signed out"))


# ------------------------------------------------------------------ expenses


def parse_day(text: str) -> str:
    """today, yesterday, -3d, or YYYY-MM-DD."""
    today = date.today()
    words = {"today": today, "yesterday": today - timedelta(days=1)}
    if text in words:
        return words[text].isoformat()
    if match := re.fullmatch(r"-(\d{1,4})d", text):
        return (today - timedelta(days=int(match.group(1)))).isoformat()
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise EmError(f"date {text!r}: use YYYY-MM-DD, today, yesterday or -Nd", INVALID) from None


def category_id(api: Api, name: str | None) -> str:
    if not name:
        return ""
    categories = api.get("/v1/categories")["categories"]
    wanted = name.casefold()
    exact = [c for c in categories if wanted in (c["name"].casefold(), c["category_id"])]
    # "food" finds "Food & dining" when no other category starts so.
    starting = [c for c in categories if c["name"].casefold().startswith(wanted)]
    for matches in (exact, starting):
        if len(matches) == 1:
            return matches[0]["category_id"]
    known = ", ".join(sorted(c["name"] for c in categories))
    raise EmError(f"no category {name!r} (yours: {known})", NOT_FOUND)


def category_names(api: Api) -> dict[str, str]:
    return {c["category_id"]: c["name"] for c in api.get("/v1/categories")["categories"]}


@cli.command(
    epilog="\b\nExamples:\n  em add 450 coffee --category food --date yesterday\n"
    "  em add 12.50 lunch --currency USD --tag work"
)
@click.argument("amount")
@click.argument("merchant", nargs=-1)
@click.option("--category", help="Category name.")
@click.option("--date", "day", default="today", show_default=True, help="YYYY-MM-DD, today, yesterday, -3d.")
@click.option("--currency", help="ISO 4217 (default: your profile's).")
@click.option("--note", default="")
@click.option("--tag", "tags", multiple=True)
@json_option
def add(
    amount: str,
    merchant: tuple[str, ...],
    category: str | None,
    day: str,
    currency: str | None,
    note: str,
    tags: tuple[str, ...],
) -> None:
    """Record an expense."""
    context = obj()
    api = context.api
    body = {
        "request_id": str(uuid.uuid4()),
        "amount": amount,
        "currency": (currency or "").upper(),
        "spent_on": parse_day(day),
        "merchant": " ".join(merchant),
        "category_id": category_id(api, category),
        "note": note,
        "tags": list(tags),
    }
    created = api.post("/v1/expenses", body)
    context.emit(
        created,
        lambda: console.print(
            f"Added {escape(words(created['amount'], created['currency'], created['merchant']))} "
            f"on {created['spent_on']} "
            f"[dim]({created['expense_id']})[/]"
        ),
    )


def month_range(month: str) -> tuple[str, str]:
    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        raise EmError(f"month {month!r}: use YYYY-MM", INVALID) from None
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first.isoformat(), (following - timedelta(days=1)).isoformat()


@cli.command(
    "ls", epilog="\b\nExamples:\n  em ls --month 2026-11 --category food\n  em ls -q chai --limit 10 --json"
)
@click.option("--month", help="YYYY-MM.")
@click.option("--from", "start", help="First day, YYYY-MM-DD.")
@click.option("--to", "end", help="Last day, YYYY-MM-DD.")
@click.option("--category", help="Category name.")
@click.option("-q", "query", help="Text in the merchant or note.")
@click.option("--limit", default=50, show_default=True, help="At most this many (0: all).")
@json_option
def list_expenses(
    month: str | None, start: str | None, end: str | None, category: str | None, query: str | None, limit: int
) -> None:
    """List expenses, newest first."""
    context = obj()
    api = context.api
    if month:
        start, end = month_range(month)
    params = {"from": start, "to": end, "category_id": category_id(api, category), "q": query}
    params["skip_total_size"] = "true"  # no total shown: the count would only cost time
    rows: list[dict[str, Any]] = []
    token = ""
    while True:
        page = api.get("/v1/expenses", **params, page_size=min(limit or 500, 500), page_token=token)
        rows.extend(page["expenses"])
        token = page.get("next_page_token", "")
        if not token or (limit and len(rows) >= limit):
            break
    rows = rows[:limit] if limit else rows

    def render() -> None:
        names = category_names(api)
        table = Table("date", "merchant", "category", Column("amount", justify="right"), "id", box=None)
        for e in rows:
            table.add_row(
                e["spent_on"],
                escape(e["merchant"]),
                escape(names.get(e["category_id"], "")),
                f"{e['amount']} {e['currency']}",
                e["expense_id"][:8],
            )
        console.print(table)
        console.print(f"[dim]{plural(len(rows), 'expense')}[/]")

    context.emit(rows, render)


# ------------------------------------------------------------------ reports


def bar(share: Decimal, width: int = BAR_WIDTH) -> str:
    filled = int((share / 100 * width).to_integral_value())
    return "█" * filled + "·" * (width - filled)


@cli.command(epilog="\b\nExamples:\n  em report month\n  em report year --date 2025-06-01 --json")
@click.argument("period", type=click.Choice(["week", "month", "year"]), default="month")
@click.option("--date", "day", help="A day inside the period (default: today).")
@json_option
def report(period: str, day: str | None) -> None:
    """Totals against the previous period, by category, with bars."""
    context = obj()
    summary = context.api.get("/v1/reports/summary", period=period, date=parse_day(day) if day else None)

    def render() -> None:
        console.print(f"[bold]{period.capitalize()} {summary['period_start']} – {summary['period_end']}[/]")
        if not summary["currencies"]:
            console.print("[dim]No expenses in this period.[/]")
        for currency in summary["currencies"]:
            code = currency["currency"]
            change = f"{currency['change_percent']}%" if currency.get("change_percent") else "—"
            console.print(
                f"\n[bold]{currency['total']} {code}[/] in {plural(currency['count'], 'expense')} "
                f"(previous {currency['previous_total']}, change {change})"
            )
            right = {"justify": "right"}
            table = Table("category", "", Column("total", **right), Column("share", **right), box=None)
            for category in currency["by_category"]:
                share = Decimal(category["share_percent"] or "0")
                table.add_row(
                    escape(category["name"] or "Uncategorized"),
                    f"[cyan]{bar(share)}[/]",
                    category["total"],
                    f"{share}%",
                )
            console.print(table)

    context.emit(summary, render)


def _simple_list(path: str, key: str, columns: list[tuple[str, Any]]) -> None:
    context = obj()
    items = context.api.get(path)[key]
    if key == "budgets":
        names = category_names(context.api)
        for item in items:
            item_name = names.get(item.get("category_id", ""), "all spending")
            item.setdefault("category_name", item_name)

    def render() -> None:
        table = Table(*[title for title, _ in columns], box=None)
        for item in items:
            table.add_row(*[escape(str(value(item))) for _, value in columns])
        console.print(table)

    context.emit(items, render)


@cli.command(epilog="\b\nExample:\n  em budgets --json")
@json_option
def budgets() -> None:
    """Budgets with what is spent and the projection."""
    _simple_list(
        "/v1/budgets",
        "budgets",
        [
            ("budget", lambda b: f"{b['category_name']} ({b['period']})"),
            ("amount", lambda b: f"{b['amount']} {b['currency']}"),
            ("spent", lambda b: b.get("status", {}).get("spent", "")),
            ("", lambda b: bar(min(Decimal(b.get("status", {}).get("percent") or "0"), Decimal(100)), 20)),
            ("%", lambda b: b.get("status", {}).get("percent", "")),
            ("projected", lambda b: b.get("status", {}).get("projected", "")),
        ],
    )


@cli.command(epilog="\b\nExample:\n  em bills")
@json_option
def bills() -> None:
    """Bills and when each is due next."""
    _simple_list(
        "/v1/bills",
        "bills",
        [
            ("payee", lambda b: b["payee"]),
            ("amount", lambda b: f"{b['amount']} {b['currency']}"),
            ("repeats", lambda b: b["recurrence"]),
            ("next due", lambda b: b.get("next_due", "")),
        ],
    )


@cli.command(epilog="\b\nExample:\n  em alerts --json")
@json_option
def alerts() -> None:
    """The latest alerts."""
    _simple_list(
        "/v1/alerts",
        "alerts",
        [
            ("when", lambda a: a["create_time"][:16].replace("T", " ")),
            ("severity", lambda a: a["severity"]),
            ("alert", lambda a: a["title"]),
        ],
    )


# ------------------------------------------------------------------ CSV


@cli.command(
    "import", epilog="\b\nExamples:\n  em import bank.csv\n  em import bank.csv --json   # totals only"
)
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def import_csv(path: Path) -> None:
    """Import a CSV (header: amount, currency, spent_on or date, merchant, category_id, note, tags).

    Each row's request id is its request_id or expense_id cell (an export imported again
    adds nothing), else derived from the file name, its line and its values: run it again
    after an interruption and only the missing rows go in."""
    context = obj()
    api = context.api
    header, lines = csvimport.read_rows(path)
    if "amount" not in header:
        raise EmError("the first line must name the columns, amount among them", INVALID)
    ignored = csvimport.ignored_columns(header)
    if ignored and not context.as_json:
        # Said before anything is sent: a column read as nothing is a column lost.
        read = ", ".join((*csvimport.ROW_FIELDS, *csvimport.ID_COLUMNS))
        click.echo(f"em: ignoring columns {', '.join(ignored)} (read: {read}, date)", err=True)
    send = lambda rows: api.post("/v1/expenses:import", {"rows": rows})  # noqa: E731
    if context.as_json or (not sys.stderr.isatty() and not os.environ.get("EM_PROGRESS")):
        totals = csvimport.run_import(path, send, lambda _: None)
    else:
        columns = [TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=Console(stderr=True)) as progress:
            task = progress.add_task("rows", total=len(lines))
            totals = csvimport.run_import(path, send, lambda n: progress.advance(task, n))
    result = {
        "rows": len(lines),
        "created": totals.created,
        "duplicate": totals.duplicate,
        "invalid": totals.invalid,
        "problems": totals.problems,
    }

    def render() -> None:
        console.print(
            f"Imported {totals.created}, already there {totals.duplicate}, invalid {totals.invalid} "
            f"(of {len(lines)} rows)"
        )
        for problem in totals.problems[:20]:
            console.print(f"  [red]{escape(problem)}[/]")

    context.emit(result, render)
    if totals.invalid:
        sys.exit(PARTIAL)


def words(*parts: str) -> str:
    """Parts joined by one space, empty ones left out (an expense without a merchant)."""
    return " ".join(part for part in parts if part)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def months_between(start: date, end: date) -> list[date]:
    months = []
    current = start.replace(day=1)
    while current <= end:
        months.append(current)
        current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    return months


@cli.command(
    epilog="\b\nExamples:\n  em export --from 2026-01-01 > out.csv\n"
    "  em export --from 2026-01-01 --to 2026-03-31 --json"
)
@click.option("--from", "start", required=True, help="YYYY-MM-DD (its whole month is exported).")
@click.option("--to", "end", help="YYYY-MM-DD (default: today).")
@json_option
def export(start: str, end: str | None) -> None:
    """Expenses as CSV on stdout, month by month, one header line."""
    context = obj()
    first, last = date.fromisoformat(parse_day(start)), date.fromisoformat(parse_day(end or "today"))
    if last < first:
        raise EmError(f"--to {last} is before --from {first}", INVALID)
    header, lines, rows = "", [], 0
    for month in months_between(first, last):
        answer = context.api.get("/v1/reports/export", period="month", date=month.isoformat())
        head, _, body = answer["csv"].partition("\n")
        header = header or head
        rows += answer["row_count"]
        lines.extend(line for line in body.splitlines() if line)
    csv_text = "\n".join([header, *lines]) + "\n" if header else ""
    context.emit({"row_count": rows, "csv": csv_text}, lambda: sys.stdout.write(csv_text))


# ------------------------------------------------------------------ operators


@cli.group()
def ops() -> None:
    """Operator commands (they read config/mesh.toml and EM_* like the services)."""


@ops.command(epilog="\b\nExamples:\n  em ops health\n  EM_CONFIG_FILE=prod.toml em ops health --json")
@json_option
def health() -> None:
    """Every service, the gateway, the dashboard, NATS, the databases and Redis."""
    from services.cli.health import mesh_health
    from services.kit.config.settings import MeshSettings

    context = obj()
    checks = mesh_health(MeshSettings())

    def render() -> None:
        table = Table("component", "kind", "address", "status", "detail", "ms")
        for check in checks:
            status = "[green]ok[/]" if check.healthy else "[red]DOWN[/]"
            table.add_row(
                check.component,
                check.kind,
                check.address,
                status,
                escape(check.detail),
                f"{check.milliseconds:.0f}",
            )
        console.print(table)

    context.emit([check.as_dict() for check in checks], render)
    if not all(check.healthy for check in checks):
        sys.exit(UNAVAILABLE)


@ops.group(
    epilog="\b\nExamples:\n  em ops dlq list\n  em ops dlq show 42\n  em ops dlq replay 42\n"
    "  EM_OPERATOR_TOKEN=$(python -m services.auth operator-token) em ops dlq list --json"
)
def dlq() -> None:
    """Notification's dead letters: deliveries that failed every try.

    The operator token is EM_OPERATOR_TOKEN, else one minted with auth's keys when this
    machine holds them."""


@dlq.command("list", epilog="\b\nExamples:\n  em ops dlq list --limit 20\n  em ops dlq list --after TOKEN")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--after", "page_token", default="", help="The next_page_token of the previous page.")
@json_option
def dlq_list(limit: int, page_token: str) -> None:
    """The dead letters, oldest first."""
    from services.cli.ops import dead_letters

    context = obj()
    answer = dead_letters(limit, page_token)

    def render() -> None:
        table = Table("seq", "channel", "delivery", "attempts", "dead since", "reason")
        for letter in answer["dead_letters"]:
            table.add_row(
                str(letter["sequence"]),
                letter["channel"],
                letter["delivery_id"],
                str(letter["attempts"]),
                letter["dead_time"],
                escape(letter["reason"]),
            )
        console.print(table)
        console.print(f"{answer['total']} dead letter(s) held")
        if answer["next_page_token"]:
            console.print(f"more: em ops dlq list --after {answer['next_page_token']}")

    context.emit(answer, render)


@dlq.command("show", epilog="\b\nExamples:\n  em ops dlq show 42")
@click.argument("sequence", type=click.IntRange(1))
@json_option
def dlq_show(sequence: int) -> None:
    """One dead letter by its sequence number."""
    from services.cli.ops import dead_letter

    context = obj()
    letter = dead_letter(sequence)

    def render() -> None:
        table = Table(show_header=False)
        for name, value in letter.items():
            table.add_row(name, escape(str(value)))
        console.print(table)

    context.emit(letter, render)


@dlq.command("replay", epilog="\b\nExamples:\n  em ops dlq replay 42")
@click.argument("sequence", type=click.IntRange(1))
@json_option
def dlq_replay(sequence: int) -> None:
    """Queue the delivery again (its dead mark cleared) and drop the dead letter."""
    from services.cli.ops import replay

    context = obj()
    answer = replay(sequence)
    context.emit(answer, lambda: console.print(f"Delivery {answer['delivery_id']} queued again"))


@ops.group(
    epilog="\b\nExamples:\n  em ops templates list --key budget.threshold\n"
    "  em ops templates publish budget.threshold email en 3\n"
    "  em ops templates rollback budget.threshold email en"
)
def templates() -> None:
    """The templating service's message templates: versions, publish, roll back.

    The operator token is EM_OPERATOR_TOKEN, else one minted with auth's keys when this
    machine holds them."""


def _published(template: dict[str, Any]) -> str:
    name = f"{template['key']} {template['channel']} {template['locale']}"
    return f"{name}: v{template['published_version']} published"


@templates.command(
    "list", epilog="\b\nExamples:\n  em ops templates list\n  em ops templates list --channel sms --json"
)
@click.option("--key", default="", help="Only this template key.")
@click.option("--channel", default="", help="email, sms, whatsapp, in_app or webhook.")
@click.option("--locale", default="", help="e.g. en, hi.")
@json_option
def templates_list(key: str, channel: str, locale: str) -> None:
    """Templates with their published version."""
    from services.cli.ops import templates as list_templates

    context = obj()
    found = list_templates(key, channel, locale)

    def render() -> None:
        table = Table("key", "channel", "locale", "published")
        for template in found:
            table.add_row(
                template["key"], template["channel"], template["locale"], str(template["published_version"])
            )
        console.print(table)

    context.emit(found, render)


@templates.command("publish", epilog="\b\nExamples:\n  em ops templates publish budget.threshold email en 3")
@click.argument("key")
@click.argument("channel")
@click.argument("locale")
@click.argument("version", type=click.IntRange(1))
@json_option
def templates_publish(key: str, channel: str, locale: str, version: int) -> None:
    """Make a stored version the one rendered from now on."""
    from services.cli.ops import publish

    context = obj()
    template = publish(key, channel, locale, version)
    context.emit(template, lambda: console.print(_published(template)))


@templates.command("rollback", epilog="\b\nExamples:\n  em ops templates rollback budget.threshold email en")
@click.argument("key")
@click.argument("channel")
@click.argument("locale")
@json_option
def templates_rollback(key: str, channel: str, locale: str) -> None:
    """Publish again the version published before the current one."""
    from services.cli.ops import rollback

    context = obj()
    template = rollback(key, channel, locale)
    context.emit(template, lambda: console.print(_published(template)))


@ops.command(
    epilog="\b\nExamples:\n  em ops rebuild reporting\n  em ops rebuild billing --user-id 01a2...\n"
    "  em ops rebuild reporting --json"
)
@click.argument("service", type=click.Choice(["reporting", "billing"]))
@click.option("--user-id", default=None, help="Rebuild only this user (default: everyone).")
@json_option
def rebuild(service: str, user_id: str | None) -> None:
    """Recompute a service's copies and rollups from the ledger, one transaction per user."""
    from services.cli.ops import rebuild as rebuild_service

    context = obj()
    counts = rebuild_service(service, user_id)
    answer = {"service": service, "users": len(counts), "expenses": sum(counts.values())}
    context.emit(
        answer,
        lambda: console.print(
            f"{service}: rebuilt {answer['users']} user(s), {answer['expenses']} expense(s)"
        ),
    )


def main() -> None:
    cli(prog_name="em")
