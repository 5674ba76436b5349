"""Fixtures for the reward tests."""

from __future__ import annotations

import pytest

from tests.rewards.reward_helpers import sandbox_processes, wait_until_gone


@pytest.fixture
def no_sandbox_leftovers():
    """Fail the test if any sandboxed process is still alive afterwards."""
    yield
    assert wait_until_gone(sandbox_processes, timeout=0.5) == []
