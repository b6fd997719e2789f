"""What em exits with: one line on stderr and a code a script can tell apart."""

from __future__ import annotations

import click

# Exit codes (also in `em --help`).
OK = 0
FAILED = 1
USAGE = 2  # click's own
NOT_SIGNED_IN = 3
NOT_FOUND = 4
CONFLICT = 5
INVALID = 6
UNAVAILABLE = 7
PARTIAL = 8

EXIT_CODES_HELP = f"""\b
Exit codes:
  {OK}  done                       {NOT_FOUND}  not found
  {FAILED}  failed                     {CONFLICT}  changed elsewhere (etag)
  {USAGE}  bad command line           {INVALID}  refused input (400)
  {NOT_SIGNED_IN}  not signed in (em login)   {UNAVAILABLE}  mesh not answering
  {PARTIAL}  import: some rows invalid (the rest went in)"""

HTTP_EXIT = {
    400: INVALID,
    401: NOT_SIGNED_IN,
    403: NOT_SIGNED_IN,
    404: NOT_FOUND,
    409: CONFLICT,
    412: CONFLICT,
}


class EmError(click.ClickException):
    """Printed as `em: <message>` with its exit code, never a traceback."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"em: {self.format_message()}", err=True)


def http_error(status: int, body: object) -> EmError:
    message = body.get("message") if isinstance(body, dict) else None
    violations = [
        f"{violation.get('field')}: {violation.get('description')}"
        for detail in (body.get("details", []) if isinstance(body, dict) else [])
        for violation in detail.get("field_violations", detail.get("fieldViolations", []))
    ]
    text = "; ".join(violations) or message or f"HTTP {status}"
    if status in (409, 412):
        text = f"changed elsewhere, get it again: {text}"
    code = HTTP_EXIT.get(status, UNAVAILABLE if status >= 500 or status == 429 else FAILED)
    return EmError(text, code)
