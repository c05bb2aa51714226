"""Shared test settings for the model zoo."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Run these small-tensor tests on one thread: on a busy 2-core machine every
    parallel op otherwise waits for a descheduled worker thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
