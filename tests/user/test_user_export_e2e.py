"""The account export through Envoy when a service fails midway: a mesh whose reporting
does not answer (its address a closed port), so the export stops at its monthly reports,
after the 200 and every earlier part were sent. What a REST client receives must say so:
a JSON document ending with export_status complete false, never one that looks whole."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import httpx
import pytest

from tests.infra import free_port
from tests.mesh import Mesh, running_mesh

pytestmark = pytest.mark.e2e
PASSWORD = "violet-harbor-tune-42-gone"
# Every service the export reads but reporting (embedded defaults: SQLite, the launcher's NATS).
SERVICES = ["auth", "user", "ledger", "billing", "notification", "ds"]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    env = {"EM_PORTS__REPORTING": str(free_port())}
    with running_mesh(tmp_path_factory.mktemp("export-no-reporting"), SERVICES, env) as running:
        yield running


async def test_an_export_cut_short_says_so_in_the_document(mesh: Mesh) -> None:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=60, trust_env=False) as client:
        email = f"gone.{secrets.token_hex(6)}@example.org"
        signed = await client.post(
            "/v1/auth/signup", json={"email": email, "password": PASSWORD, "display_name": "Gone"}
        )
        assert signed.status_code == 200, signed.text
        headers = {"authorization": f"Bearer {signed.json()['access_token']}"}
        expense = {"request_id": secrets.token_hex(8), "amount": "12.00", "currency": "INR"}
        created = await client.post("/v1/expenses", json=expense, headers=headers)
        assert created.status_code == 200, created.text

        answer = await client.get("/v1/users/me:export", headers=headers)
    # The status line went out with the first part; the body is what tells.
    assert answer.status_code == 200
    document = json.loads(answer.content)
    assert [e["expense_id"] for e in document["expenses"]] == [created.json()["expense_id"]]
    status = document["export_status"]
    assert status["complete"] is False and status["failed_part"] == "monthly_reports", status
    assert status["error"]["code"] in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, status
    assert "notification_preferences" not in document
