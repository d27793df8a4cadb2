"""Tests never reach a W&B server: runs log offline unless a test sets the mode itself. (``wandb.mode: auto``
is online for a developer who ran ``wandb login``; every test run would be uploaded.)"""
import pytest


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("NETRC", str(tmp_path_factory.getbasetemp() / "no-netrc"))  # no login, not even ~/.netrc
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
