from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def collect_after_each_test() -> Iterator[None]:
    """Collect garbage before a test ends: a socket one leaves open fails that test
    (ResourceWarning is an error here), not whichever later test the collector runs in."""
    yield
    gc.collect()
