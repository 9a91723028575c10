"""Fixtures of the trainer tests (helpers and the `torchrun` worker: `_train_worker.py`)."""

import pytest


def _reset_accelerate_state() -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps its state (mixed precision, ...) per process: reset it around each test, as accelerate's own
    tests do, so that tests may use different settings."""
    _reset_accelerate_state()
    yield
    _reset_accelerate_state()
