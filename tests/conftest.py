"""Shared test fixtures: the real data folder, small torch thread pools, one intra-op thread
for the modules that ask for it, and a tiny model file. The QGIS fixtures (the application,
the plugin and its provider, the provider set to this environment's ``ces``) are in
tests/qgis/conftest.py. Plain helpers live in ``_helpers_*.py``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from _helpers_qgis import make_tiny_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CES_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real SAR data sets (../shared/data); the test is skipped where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True, scope="session")
def _small_thread_pools():
    try:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:
        pass
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures(
    "one_thread")``): its models are tiny, and on a busy 2-core machine a second spinning
    thread makes them many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny model file, made once per session."""
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
