"""The REST API as em calls it, and where em keeps the session.

The session file (`<config dir>/expense-mesh/session.json`, mode 0600) holds the refresh
token and the current access token; a refresh rotates both. Refreshes are serialised by a
lock file: auth takes a rotated refresh token presented twice (two `em` runs racing) as
reuse and ends the session."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx

from services.cli.errors import NOT_SIGNED_IN, UNAVAILABLE, EmError, http_error

DEFAULT_URL = "http://127.0.0.1:8080"
# Refresh this long before the access token expires.
EXPIRY_MARGIN_SECONDS = 30


def config_dir() -> Path:
    return Path(os.environ.get("EM_CLI_CONFIG_DIR") or click.get_app_dir("expense-mesh"))


# The ledger's answer to a write, and what report reads send back to wait for it.
CONSISTENCY_HEADER = "x-consistency-token"
REPORTS = "/v1/reports/"


class SessionStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "session.json"

    def load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise EmError(f"{self.path} is damaged: run em login again", NOT_SIGNED_IN) from None

    def save(self, session: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path.with_suffix(".tmp")
        # Created 0600 before anything is written into it.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(session, file)
        temporary.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.directory / "session.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


class Api:
    def __init__(self, base_url: str, store: SessionStore, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.store = store
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, headers={"user-agent": "em-cli"})

    # -- session
    def log_in(self, email: str, password: str) -> dict[str, Any]:
        tokens = self._send("POST", "/v1/auth/login", json={"email": email, "password": password})
        self._keep(tokens)
        return tokens["user"]

    def log_out(self) -> None:
        session = self.store.load()
        if session.get("refresh_token"):
            with contextlib.suppress(EmError):
                self._send("POST", "/v1/auth/logout", json={"refresh_token": session["refresh_token"]})
        self.store.clear()

    def _keep(self, tokens: dict[str, Any]) -> None:
        self.store.save(
            {
                "base_url": self.base_url,
                "refresh_token": tokens["refresh_token"],
                "access_token": tokens["access_token"],
                "expires_at": time.time() + int(tokens["expires_in"]),
                "user": tokens.get("user", {}),
            }
        )

    def access_token(self, force_refresh: bool = False) -> str:
        with self.store.locked():
            session = self.store.load()
            if not session.get("refresh_token"):
                raise EmError("not signed in: run em login", NOT_SIGNED_IN)
            fresh = session.get("expires_at", 0) - EXPIRY_MARGIN_SECONDS > time.time()
            if fresh and not force_refresh:
                return session["access_token"]
            try:
                tokens = self._send(
                    "POST", "/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
                )
            except EmError as error:
                if error.exit_code == NOT_SIGNED_IN:
                    self.store.clear()
                    raise EmError("the session has ended: run em login", NOT_SIGNED_IN) from None
                raise
            self._keep({**tokens, "user": session.get("user", {})})
            return tokens["access_token"]

    # -- calls
    def call(self, method: str, path: str, extra_headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        headers = {"authorization": f"Bearer {self.access_token()}", **(extra_headers or {})}
        try:
            return self._send(method, path, headers=headers, **kwargs)
        except EmError as error:
            if error.exit_code != NOT_SIGNED_IN:
                raise
            # Revoked or expired early: one refresh, one retry.
            headers = {**headers, "authorization": f"Bearer {self.access_token(force_refresh=True)}"}
            return self._send(method, path, headers=headers, **kwargs)

    def get(self, path: str, **params: Any) -> Any:
        # Read-your-writes (docs/consistency.md): a report waits for this user's last write
        # from this machine, so `em add` then `em report` shows the expense.
        written = self.store.load().get("consistency_token") if path.startswith(REPORTS) else None
        extra = {CONSISTENCY_HEADER: written} if written else None
        query = {k: v for k, v in params.items() if v not in (None, "")}
        return self.call("GET", path, extra_headers=extra, params=query)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.call("POST", path, json=body)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise EmError(f"cannot reach {self.base_url}: {error}", UNAVAILABLE) from None
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {"message": response.text[:200]}
        if response.status_code >= 400:
            raise http_error(response.status_code, body)
        if written := response.headers.get(CONSISTENCY_HEADER):
            self._remember_write(written)
        return body

    def _remember_write(self, token: str) -> None:
        with self.store.locked():
            session = self.store.load()
            if session:
                self.store.save({**session, "consistency_token": token})
