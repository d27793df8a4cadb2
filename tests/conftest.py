"""Shared fixtures: a throwaway PostgreSQL server (tests/postgres.py)."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def postgres_server():
    from tests import postgres

    if postgres.find_bin() is None:
        if os.environ.get("NLBENCH_REQUIRE_POSTGRES") == "1":
            pytest.fail("NLBENCH_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries (initdb, pg_ctl)")
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl); set NLBENCH_PG_BIN")
    server = postgres.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new empty database on the session's server: its SQLAlchemy URL (postgresql+psycopg://...)."""
    return postgres_server.create_database()
