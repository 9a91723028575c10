"""Fixtures of the KV-cache tests (helpers: tests/attention/_kv_inputs.py)."""

import pytest

from diffusers_longvid.testing import get_tiny_transformer


@pytest.fixture
def transformer():
    """A fresh 4-layer tiny Wan transformer per test (the cache's blocks are its last two)."""
    return get_tiny_transformer(num_layers=4)
