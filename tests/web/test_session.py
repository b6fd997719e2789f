"""The web service's session endpoint through the gateway: the refresh token only ever
in the HttpOnly cookie, rotated on refresh, refused without the page's header."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.mesh import Mesh

pytestmark = pytest.mark.e2e
PAGE = {"x-em-csrf": "1"}
PASSWORD = "correct horse battery staple"


def test_log_in_refresh_and_log_out_with_the_cookie(mesh_postgres: Mesh) -> None:
    email = f"web-{uuid.uuid4().hex[:8]}@example.com"
    # Cookies marked Secure are sent back over http only to loopback by browsers; httpx
    # needs to be told the cookie's value explicitly.
    with httpx.Client(base_url=mesh_postgres.base_url) as client:
        nameless = client.post(
            "/web/session/signup", json={"email": email, "password": PASSWORD}, headers=PAGE
        )
        # Auth's field violations come through as the gateway would show them.
        assert nameless.status_code == 400
        violation = nameless.json()["details"][0]["field_violations"][0]
        assert violation["field"] == "display_name" and violation["description"]
        body = {"email": email, "password": PASSWORD, "display_name": "Meera"}
        signup = client.post("/web/session/signup", json=body, headers=PAGE)
        assert signup.status_code == 200, signup.text
        assert set(signup.json()) == {"access_token", "expires_in", "user"}
        assert signup.headers["cache-control"] == "no-store"
        cookie = signup.headers["set-cookie"]
        for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/web/session"):
            assert attribute in cookie
        first = signup.cookies["em_refresh"]
        me = client.get("/v1/users/me", headers={"authorization": f"Bearer {signup.json()['access_token']}"})
        assert me.status_code == 200

        refreshed = client.post("/web/session/refresh", headers={**PAGE, "cookie": f"em_refresh={first}"})
        assert refreshed.status_code == 200
        second = refreshed.cookies["em_refresh"]
        assert second != first
        # The rotated-out token is reuse now: auth ends the session, and the page is told so.
        reused = client.post("/web/session/refresh", headers={**PAGE, "cookie": f"em_refresh={first}"})
        assert reused.status_code == 401 and "Max-Age=0" in reused.headers["set-cookie"]


def test_refused_without_the_page_header_or_a_cookie(mesh_postgres: Mesh) -> None:
    with httpx.Client(base_url=mesh_postgres.base_url) as client:
        forged = client.post("/web/session/login", json={"email": "a@example.com", "password": "x"})
        assert forged.status_code == 403 and forged.json()["code"] == 7
        no_cookie = client.post("/web/session/refresh", headers=PAGE)
        assert no_cookie.status_code == 401 and no_cookie.json()["message"] == "not signed in"
        wrong = client.post(
            "/web/session/login", json={"email": "nobody@example.com", "password": "wrong one"}, headers=PAGE
        )
        assert wrong.status_code == 401
        assert "set-cookie" not in wrong.headers
        # Other paths of the origin stay the API's: no token, no answer; a path no route
        # has is the gateway's NO_ROUTE 404, with or without a token (docs/errors.md).
        assert client.get("/v1/expenses").status_code == 401
        nowhere = client.get("/nothing-here")
        assert nowhere.status_code == 404 and nowhere.json()["message"] == "no such route"


def test_up_prints_the_dashboard_url(mesh_postgres: Mesh) -> None:
    assert f"dashboard            {mesh_postgres.base_url}/" in mesh_postgres.log
