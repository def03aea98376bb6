"""Shared test configuration.

Hypothesis profiles: ``dev`` (default, fast) and ``ci`` (more examples; chosen when ``CI`` is set).
Under pytest-xdist each worker uses one thread for torch/BLAS so two workers share two cores fairly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CLI commands default to one worker process per core; tests that want several pass --workers.
os.environ.setdefault("AUTOPANOPTIC_WORKERS", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")

settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (read-only: copy what a test changes into ``tmp_path``)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.fail(f"shared data not found at {path}; the project expects ../shared beside the checkout")
    return path
