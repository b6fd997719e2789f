"""pytest fixtures of the fakes, each on a free loopback port for one test. A test module
or conftest.py imports the ones it uses (`from tests.fakes.fixtures import fake_twilio`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.graph import FakeGraphApi
from tests.fakes.smtp import FakeSmtpServer
from tests.fakes.twilio import FakeTwilio


@pytest.fixture
async def fake_smtp() -> AsyncIterator[FakeSmtpServer]:
    async with FakeSmtpServer() as server:
        yield server


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def fake_graph() -> AsyncIterator[FakeGraphApi]:
    async with FakeGraphApi() as fake:
        yield fake
