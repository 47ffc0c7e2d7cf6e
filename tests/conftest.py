from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.clock import FakeClock
from daemon.incidents import IncidentStore
from daemon.sandbox.web import ToyWebService


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    s = IncidentStore(tmp_path / "incidents.db")
    yield s
    s.close()


@pytest.fixture
def web() -> Iterator[ToyWebService]:
    """The sandbox's toy web service on a free loopback port."""
    service = ToyWebService().start()
    yield service
    service.stop()
