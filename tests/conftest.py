"""Shared test set-up: a repeatable hypothesis profile for CI, and no network (pytest-socket)."""

import os

from hypothesis import HealthCheck, settings

# CI runs derandomized so a red run can be repeated exactly; locally, `HYPOTHESIS_PROFILE=dev`
# explores new examples each time.
settings.register_profile(
    "ci", derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_circuit_breakers():
    """Each test starts with no endpoint known to be down (the breakers are process-wide)."""
    from vse.llm.client import reset_breakers

    reset_breakers()
    yield
    reset_breakers()
