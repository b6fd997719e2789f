"""Rules of the auth service as plain Python: emails, display names, password
policy, refresh tokens and their verdicts, client addresses."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from services.auth.api import client_ip
from services.auth.domain import (
    Account,
    RefreshTokenRecord,
    RefreshVerdict,
    SessionRecord,
    new_refresh_token,
    normalise_display_name,
    normalise_email,
    password_weakness,
    person_user_agent,
    refresh_token_hash,
    refresh_verdict,
    session_expiry,
)
from services.kit.domain.timestamps import utcnow

MIN_SCORE = 2


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("  bob.smith+tag@Mail.Example.org ", "bob.smith+tag@mail.example.org"),
        ("Ünï@Bücher.de", "ünï@bücher.de"),
    ],
)
def test_emails_are_validated_and_lowercased(raw: str, normalised: str) -> None:
    assert normalise_email(raw) == normalised


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "is required"),
        ("   ", "is required"),
        ("no-at-sign", "not a valid email"),
        ("a@b", "not a valid email"),
        ("someone@host.test", "not a valid email"),
        ("Name <a@example.org>", "not a valid email"),
        ("x" * 250 + "@example.org", "at most 254"),
    ],
)
def test_invalid_emails_are_refused(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalise_email(raw)


def test_display_names_are_trimmed_and_bounded() -> None:
    assert normalise_display_name("  Ann  ") == "Ann"
    assert normalise_display_name("n" * 100) == "n" * 100
    for bad, reason in [
        ("", "required"),
        ("  ", "required"),
        ("n" * 101, "at most 100"),
        ("a\nb", "control"),
    ]:
        with pytest.raises(ValueError, match=reason):
            normalise_display_name(bad)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("", "is required"),
        ("Ab1!x", "at least 8"),
        ("k" * 129, "at most 128"),
        ("password", "too easy to guess"),
        ("12345678", "too easy to guess"),
        ("qwertyuiop", "too easy to guess"),
        ("aaaaaaaaaaaa", "too easy to guess"),
        ("abcd1234", "too easy to guess"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password: str, reason: str) -> None:
    problem = password_weakness(password, [], MIN_SCORE)
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "password",
    ["violet-harbor-tune-42", "correct horse battery staple", "Tr0ub4dor&3-Xq", "é" * 4 + "çñ🙂ørth-ßal"],
)
def test_strong_passwords_pass(password: str) -> None:
    assert password_weakness(password, ["someone@example.org", "Some One"], MIN_SCORE) is None


def test_the_users_own_details_make_a_password_guessable() -> None:
    password = "ZebulonQuartermaine"
    assert password_weakness(password, [], MIN_SCORE) is None
    problem = password_weakness(password, ["zq@example.org", "Zebulon Quartermaine"], MIN_SCORE)
    assert problem is not None and "too easy to guess" in problem


def test_the_score_threshold_is_configurable() -> None:
    password = "Quartermaine2024"
    assert password_weakness(password, [], 0) is None
    assert password_weakness(password, [], 4) is not None


def test_long_passwords_up_to_the_limit_are_checked() -> None:
    assert password_weakness("k9#Lm2$qW" * 14, [], MIN_SCORE) is None  # 126 characters
    assert password_weakness("a" * 128, [], MIN_SCORE) is not None


def test_refresh_tokens_are_random_urlsafe_and_stored_as_sha256() -> None:
    tokens = {new_refresh_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in list(tokens)[:20]:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 32 bytes = 256 bits
        digest = refresh_token_hash(token)
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        assert digest == refresh_token_hash(token) and token not in digest


def _record(rotated: bool = False, revoked: bool = False, expired: bool = False) -> RefreshTokenRecord:
    now = utcnow()
    session = SessionRecord(
        session_id="s",
        user_id="u",
        created_at=now - timedelta(days=1),
        last_used_at=now,
        expires_at=now - timedelta(seconds=1) if expired else session_expiry(now, 30),
        revoked_at=now if revoked else None,
        user_agent="",
        ip_address="127.0.0.1",
    )
    return RefreshTokenRecord(
        token_hash="h", rotated_at=now if rotated else None, session=session, account=Account("u", "e", "n")
    )


@pytest.mark.parametrize(
    ("record", "verdict"),
    [
        (_record(), RefreshVerdict.ROTATE),
        (_record(rotated=True), RefreshVerdict.REUSED),
        (_record(revoked=True), RefreshVerdict.ENDED),
        (_record(rotated=True, revoked=True), RefreshVerdict.ENDED),
        (_record(expired=True), RefreshVerdict.ENDED),
    ],
)
def test_refresh_verdicts(record: RefreshTokenRecord, verdict: RefreshVerdict) -> None:
    assert refresh_verdict(record, utcnow()) is verdict


def test_session_expiry_is_absolute() -> None:
    now = utcnow()
    assert session_expiry(now, 30) == now + timedelta(days=30)


@pytest.mark.parametrize(
    ("metadata", "peer", "expected"),
    [
        (
            [("x-envoy-external-address", "203.0.113.7"), ("x-forwarded-for", "10.0.0.1")],
            "ipv4:127.0.0.1:1",
            "203.0.113.7",
        ),
        ([("x-forwarded-for", "198.51.100.1, 203.0.113.9")], "ipv4:127.0.0.1:1", "203.0.113.9"),
        ([("x-forwarded-for", "garbage")], "ipv4:192.0.2.4:5555", "192.0.2.4"),
        ([("x-envoy-external-address", "not-an-ip")], "ipv6:[::1]:5555", "::1"),
        ([], "ipv6:[2001:DB8::1]:80", "2001:db8::1"),
        ([], "unix:/tmp/socket", "unknown"),
        ([("x-envoy-external-address", b"203.0.113.7")], "ipv4:192.0.2.4:1", "192.0.2.4"),
    ],
)
def test_client_ip(metadata: list[tuple[str, str | bytes]], peer: str, expected: str) -> None:
    assert client_ip(metadata, peer) == expected


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        # The dashboard's session endpoint calls auth with the browser's user agent as the
        # channel's primary one; gRPC appends its own, which "New sign-in on ..." showed.
        (
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36 "
            "grpc-python-asyncio/1.85.1 grpc-c/58.0.0 (linux; chttp2)",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36",
        ),
        ("grpcurl/v1.9.1 grpc-go/1.61.0", "grpcurl/v1.9.1"),
        ("curl/7.88.1", "curl/7.88.1"),
        ("em-cli", "em-cli"),
        # A bare gRPC client has nothing else to show.
        (
            "grpc-python-asyncio/1.85.1 grpc-c/58.0.0 (linux; chttp2)",
            "grpc-python-asyncio/1.85.1 grpc-c/58.0.0 (linux; chttp2)",
        ),
    ],
)
def test_person_user_agent_drops_the_grpc_library_suffix(raw: str, shown: str) -> None:
    assert person_user_agent(raw) == shown
