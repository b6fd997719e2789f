"""Operator commands of the auth service: `python -m services.auth operator-token`."""

from __future__ import annotations

import getpass

import click

from services.auth.keys import load_key_ring
from services.auth.service_identity import sign_service_token
from services.auth.settings import AuthMeshSettings
from services.kit.identity.service_tokens import MAX_SERVICE_TOKEN_SECONDS, Caller


def _default_operator() -> str:
    """$USER when it makes a valid name (a container's uid may have none): else "operator"."""
    try:
        name = getpass.getuser().lower()
    except (OSError, KeyError):
        return "operator"
    return name if Caller.from_subject(f"operator:{name}") else "operator"


@click.command("operator-token")
@click.option(
    "--name", default=_default_operator, help="Who is calling (logged by the callee). Default: $USER."
)
@click.option(
    "--ttl",
    type=click.IntRange(30, MAX_SERVICE_TOKEN_SECONDS),
    default=None,
    help="Lifetime in seconds (default: [jwt] operator_token_ttl_seconds).",
)
def operator_token(name: str, ttl: int | None) -> None:
    """Print a short-lived operator token that opens mesh-internal RPCs (grpcurl -H
    "authorization: Bearer ..."). Signed with auth's current key: run it where auth's
    signing keys are (the data dir; in k8s/compose, inside an auth container)."""
    settings = AuthMeshSettings()
    caller = Caller.from_subject(f"operator:{name}")
    if caller is None:
        raise click.BadParameter("lowercase letters, digits and . _ @ - only", param_hint="--name")
    try:
        ring = load_key_ring(settings)
    except FileNotFoundError as error:
        raise click.ClickException(f"{error}: run this where the auth service keeps its keys") from None
    lifetime = ttl or settings.jwt.operator_token_ttl_seconds
    click.echo(sign_service_token(settings.jwt, ring.current, caller, lifetime))
