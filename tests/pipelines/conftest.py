"""Fixtures of the pipeline tests: one tiny random pipeline per module and channel layout (helpers: tests/_pipes.py)."""

import pytest
from _pipes import make_pipe


@pytest.fixture(scope="module")
def pipe36():
    """36 input channels (the extension model), no KV cache."""
    return make_pipe(36)


@pytest.fixture(scope="module")
def pipe16():
    """16 input channels (stock T2V: replacement conditioning), no KV cache."""
    return make_pipe(16)
