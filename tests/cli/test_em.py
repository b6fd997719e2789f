"""em as a person and an operator type it: subprocesses against a whole mesh on
PostgreSQL, Redis and NATS, reading stdout, stderr and exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from services.cli import errors
from services.kit.config.settings import REPO_ROOT
from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"


class Em:
    """`python -m services.cli` with its own config dir, pointed at one mesh."""

    def __init__(self, mesh: Mesh, config_dir: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EM_")},
            **mesh.env,
            "EM_URL": mesh.base_url,
            "EM_CLI_CONFIG_DIR": str(config_dir),
            "COLUMNS": "120",
        }

    def run(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            capture_output=True,
            text=True,
            input=stdin,
            env={**self.env, **(env or {})},
            timeout=60,
        )

    def json(self, *args: str) -> object:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def em(mesh_postgres: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Em:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    signup = httpx.post(
        f"{mesh_postgres.base_url}/v1/auth/signup",
        json={"email": email, "password": PASSWORD, "display_name": "Ravi"},
    )
    assert signup.status_code == 200, signup.text
    cli = Em(mesh_postgres, tmp_path_factory.mktemp("em-config"))
    done = cli.run("login", "--email", email, env={"EM_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    assert "Signed in as Ravi" in done.stdout
    return cli


def test_login_keeps_the_session_private(em: Em) -> None:
    session = Path(em.env["EM_CLI_CONFIG_DIR"]) / "session.json"
    assert session.stat().st_mode & 0o777 == 0o600
    assert json.loads(session.read_text())["refresh_token"]


def test_add_list_and_report(em: Em) -> None:
    added = em.json("add", "450", "chai", "point", "--category", "food", "--date", "yesterday")
    assert added["merchant"] == "chai point" and added["amount"] == "450.00" and added["currency"] == "INR"
    em.json("add", "1200.50", "big", "bazaar", "--category", "groceries")
    listed = em.json("ls", "--category", "food")
    assert [e["merchant"] for e in listed] == ["chai point"]
    table = em.run("ls")
    assert table.returncode == 0 and "big bazaar" in table.stdout and "1200.50 INR" in table.stdout
    # Read-your-writes: the report waits for the last write's consistency token.
    report = em.run("report", "month")
    assert report.returncode == 0 and "█" in report.stdout and "Groceries" in report.stdout


def test_names_with_square_brackets_print_as_typed(em: Em) -> None:
    """A merchant is data, not Rich markup: '[/x]' crashed em add (after the expense was
    saved: a retry made a twin) and every later em ls; '[bold]' vanished into bold."""
    added = em.run("add", "5", "[/pos] [bold]Kiosk", "--date", "2025-01-15")
    assert added.returncode == 0, added.stderr
    assert "Added 5.00 INR [/pos] [bold]Kiosk on 2025-01-15" in added.stdout
    bare = em.run("add", "6", "--date", "2025-01-15")
    assert bare.returncode == 0 and "Added 6.00 INR on 2025-01-15" in bare.stdout, bare.stdout
    listed = em.run("ls", "--month", "2025-01")
    assert listed.returncode == 0, listed.stderr
    assert "[/pos] [bold]Kiosk" in listed.stdout and "2 expenses" in listed.stdout


def test_errors_are_one_line_with_meaningful_codes(em: Em, tmp_path: Path) -> None:
    bad_date = em.run("add", "10", "x", "--date", "someday")
    assert bad_date.returncode == errors.INVALID
    assert bad_date.stderr.strip().count("\n") == 0 and bad_date.stderr.startswith("em: ")
    refused = em.run("add", "12.3.4", "x")
    assert refused.returncode == errors.INVALID and "amount" in refused.stderr
    assert "Traceback" not in refused.stderr
    unknown = em.run("ls", "--category", "no-such-thing")
    assert unknown.returncode == errors.NOT_FOUND
    stranger = em.run("ls", env={"EM_CLI_CONFIG_DIR": str(tmp_path / "nobody")})
    assert stranger.returncode == errors.NOT_SIGNED_IN and "em login" in stranger.stderr
    down = em.run("ls", env={"EM_URL": "http://127.0.0.1:9", "EM_CLI_CONFIG_DIR": str(tmp_path / "n2")})
    assert down.returncode == errors.NOT_SIGNED_IN


def bank_csv(rows: int, day: str = "2026-10-15") -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["amount", "currency", "spent_on", "merchant"])
    for index in range(rows):
        writer.writerow([f"{10 + index}.25", "INR", day, f"shop {index}"])
    return out.getvalue()


def test_import_resumes_without_duplicates_then_exports(em: Em, tmp_path: Path) -> None:
    """An import cut short (here: the first 250 rows of the same file) and run again
    adds only the rest: request ids come from the file name, the line and its values."""
    whole = bank_csv(450)
    partial_dir = tmp_path / "partial"
    partial_dir.mkdir()
    head = "".join(whole.splitlines(keepends=True)[:251])
    (partial_dir / "bank.csv").write_text(head)
    (tmp_path / "bank.csv").write_text(whole)

    first = em.json("import", str(partial_dir / "bank.csv"))
    assert first == {"rows": 250, "created": 250, "duplicate": 0, "invalid": 0, "problems": []}
    resumed = em.json("import", str(tmp_path / "bank.csv"))
    assert resumed["created"] == 200 and resumed["duplicate"] == 250

    exported = em.run("export", "--from", "2026-10-01", "--to", "2026-10-31")
    assert exported.returncode == 0, exported.stderr
    lines = list(csv.reader(io.StringIO(exported.stdout)))
    assert len(lines) == 451 and "shop 449" in {cell for line in lines for cell in line}
    # The export imported back under another name: keyed by expense_id, nothing is added.
    (tmp_path / "october-again.csv").write_text(exported.stdout)
    again = em.json("import", str(tmp_path / "october-again.csv"))
    assert (again["created"], again["duplicate"], again["invalid"]) == (0, 450, 0)


def test_import_shows_a_progress_bar_in_a_terminal(em: Em, tmp_path: Path) -> None:
    """In a real terminal (tmux), as a person runs it: Rich's bar, then the totals."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    path = tmp_path / "statement.csv"
    path.write_text(bank_csv(1200, day="2026-09-10"))
    # A tmux server of its own, its socket in the test's folder: other tmux users are left alone.
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    command = shlex.join([sys.executable, "-m", "services.cli", "import", str(path)])
    keys = ("EM_URL", "EM_CLI_CONFIG_DIR", "PYTHONPATH")
    env = [arg for key in keys if em.env.get(key) for arg in ("-e", f"{key}={em.env[key]}")]
    size = ["-x", "120", "-y", "20"]
    subprocess.run(
        [*tmux, "new-session", "-d", *size, *env, f"{command}; sleep 60"], check=True, cwd=REPO_ROOT
    )
    try:
        deadline = time.monotonic() + 60
        screen = ""
        while "Imported" not in screen and time.monotonic() < deadline:
            time.sleep(0.3)
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    assert "importing" in screen and "━" in screen and "1200/1200" in screen, screen
    assert "Imported 1200, already there 0, invalid 0 (of 1200 rows)" in screen


def test_a_partly_invalid_import_says_which_lines(em: Em, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text("amount,currency,merchant\n12.00,INR,ok\nlots,INR,bad\n")
    done = em.run("import", str(path), "--json")
    assert done.returncode == errors.PARTIAL
    result = json.loads(done.stdout)
    assert result["created"] == 1 and result["invalid"] == 1
    assert result["problems"][0].startswith("line 3: amount")


def test_ops_health_checks_every_part(em: Em, mesh_postgres: Mesh) -> None:
    checks = em.json("ops", "health")
    components = {check["component"]: check for check in checks}
    for name in [*mesh_postgres.services, "gateway", "web", "nats", "database", "redis"]:
        assert components[name]["healthy"], components[name]
    assert components["redis"]["detail"] == "PONG"
    table = em.run("ops", "health")
    assert table.returncode == 0 and "SERVING" in table.stdout
    # A service that does not answer: its row says so and the exit code is UNAVAILABLE.
    down = em.run("ops", "health", "--json", env={"EM_PORTS__BILLING": "9"})
    assert down.returncode == errors.UNAVAILABLE
    billing = next(check for check in json.loads(down.stdout) if check["component"] == "billing")
    assert not billing["healthy"]


def test_ops_dead_letters_and_rebuilds(em: Em) -> None:
    """notification's operator RPCs with a token minted from auth's keys (the mesh's data
    dir); a token that is not one is refused; the rebuilds recount the ledger."""
    listed = em.json("ops", "dlq", "list")
    assert listed["dead_letters"] == [] and int(listed["total"]) == 0
    for command in ("show", "replay"):
        missing = em.run("ops", "dlq", command, "999999")
        assert missing.returncode == errors.NOT_FOUND, missing.stderr
        assert missing.stderr.startswith("em: ") and missing.stderr.count("\n") == 1
    forged = em.run("ops", "dlq", "list", env={"EM_OPERATOR_TOKEN": "not-an-operator-token"})
    assert forged.returncode == errors.NOT_SIGNED_IN, forged.stderr
    expenses = len(em.json("ls", "--limit", "0"))
    assert expenses >= 2
    for service in ("reporting", "billing"):
        rebuilt = em.json("ops", "rebuild", service)
        assert rebuilt["service"] == service and rebuilt["users"] >= 1
        assert rebuilt["expenses"] >= expenses
    table = em.run("ops", "rebuild", "reporting")
    assert table.returncode == 0 and "reporting: rebuilt" in table.stdout


def test_ops_templates_publish_and_roll_back(em: Em, mesh_postgres: Mesh) -> None:
    """A second version of a template (made over gRPC with an operator token, as an operator
    would), published with em, then rolled back to the first."""
    import grpc

    from expense.templating.v1 import templating_pb2 as pb
    from expense.templating.v1 import templating_pb2_grpc as pb_grpc

    which = ("budget.threshold", "in_app", "en")
    (listed,) = em.json(
        "ops", "templates", "list", "--key", which[0], "--channel", which[1], "--locale", which[2]
    )
    first = listed["published_version"]
    assert first >= 1
    token = subprocess.run(
        [sys.executable, "-m", "services.auth", "operator-token"], env=em.env, capture_output=True, text=True
    ).stdout.strip()
    with grpc.insecure_channel(mesh_postgres.address("templating")) as channel:
        stub = pb_grpc.TemplatingInternalServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),)
        template = stub.GetTemplate(
            pb.GetTemplateRequest(key=which[0], channel=which[1], locale=which[2]), metadata=metadata
        )
        published = next(v for v in template.versions if v.version == first)
        draft = stub.CreateTemplateVersion(
            pb.CreateTemplateVersionRequest(
                key=which[0],
                channel=which[1],
                locale=which[2],
                subject=published.subject + " (v2)",
                body=published.body,
                variables=published.variables,
                sample=published.sample,
            ),
            metadata=metadata,
        )
    assert em.run("ops", "templates", "publish", *which, "999").returncode == errors.NOT_FOUND
    shown = em.run("ops", "templates", "publish", *which, str(draft.version))
    assert shown.returncode == 0 and f"v{draft.version} published" in shown.stdout, shown.stderr
    rolled = em.json("ops", "templates", "rollback", *which)
    assert rolled["published_version"] == first


def test_help_shows_examples_and_exit_codes(em: Em) -> None:
    top = em.run("--help")
    assert "em import bank.csv" in top.stdout and "Exit codes" in top.stdout
    assert "em add 450 coffee --category food --date yesterday" in em.run("add", "--help").stdout
    assert "em ops dlq replay 42" in em.run("ops", "dlq", "replay", "--help").stdout


def test_logout_ends_the_session(em: Em) -> None:
    session = json.loads((Path(em.env["EM_CLI_CONFIG_DIR"]) / "session.json").read_text())
    assert em.run("logout").returncode == 0
    assert em.run("ls").returncode == errors.NOT_SIGNED_IN
    # The refresh token the file held no longer works at auth.
    refresh = httpx.post(
        f"{em.env['EM_URL']}/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refresh.status_code == 401
