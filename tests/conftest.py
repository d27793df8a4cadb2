"""The session's kernels, and shared fixtures. Tests never reach a W&B server: runs log offline unless a test
sets the mode itself (``wandb.mode: auto`` is online for a developer who ran ``wandb login``; every test run
would be uploaded). A throwaway PostgreSQL server for the multi-machine sweep tests (tests/postgres.py)."""
from __future__ import annotations

import os

import pytest

from nlbench import numerics

# The whole session runs the tiny and smoke profiles' kernels (AVX2 in ATen and oneDNN), set before torch
# computes anything, so that in-process runs give the same numbers on any x86-64 CPU (the golden numerics of
# tests/test_numerics.py among them).
if not numerics.lacks("avx2"):
    os.environ.update(numerics.env_of("avx2"))


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("NETRC", str(tmp_path_factory.getbasetemp() / "no-netrc"))  # no login, not even ~/.netrc
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)


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
