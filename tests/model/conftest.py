"""Fixture datasets with a planted signal (``mtl.testing``), written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl.testing import write_synthetic_prepared
from tests.model.helpers import ROWS, link_prepared


@pytest.fixture(scope="session")
def prepared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    write_synthetic_prepared(root / "aliccp", "aliccp", rows=ROWS, seed=1)
    write_synthetic_prepared(root / "census", "census", rows=ROWS, seed=2)
    return root


@pytest.fixture
def data_dir(tmp_path: Path, prepared_root: Path) -> Path:
    """A fresh data directory whose prepared/ datasets are the session's fixtures."""
    for dataset in ("aliccp", "census"):
        link_prepared(tmp_path, prepared_root / dataset, dataset)
    return tmp_path


# MetaHeac's own fixtures (the look-alike data) serve tests/model/test_metaheac*.py
from tests.model.metaheac_support import lookalike_root, metaheac_root, single_thread  # noqa: E402, F401
