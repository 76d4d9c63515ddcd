"""The torch-free catalog (what the CLI checks arguments against) agrees with the real registries."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from mtl import catalog
from mtl.datasets import DATASET_NAMES, get_dataset
from mtl.models import MODELS


def test_datasets_sources_and_splits_match_the_declarations():
    assert tuple(catalog.DATASETS) == DATASET_NAMES
    for name, entry in catalog.DATASETS.items():
        declared = get_dataset(name)
        assert entry.sources == tuple(declared.sources), name
        assert entry.splits == tuple(declared.splits), name
        assert entry.funnel == bool(declared.funnel), name
        assert entry.campaigns == bool(declared.group_column), name
        no_url = tuple(
            source.name
            for source in declared.sources.values()
            if source.kind != "generated" and any(f.url is None and f.required for f in source.files)
        )
        assert entry.needs_location == no_url, name


def test_models_are_the_registry_classes():
    assert list(catalog.MODELS) == list(MODELS)
    for name, entry in catalog.MODELS.items():
        module, _, cls = entry.cls.partition(":")
        assert getattr(importlib.import_module(module), cls) is MODELS[name]
        for which in ("train", "evaluate"):
            module, _, function = getattr(entry.workflow, which).partition(":")
            assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize(("dataset", "models"), [
    ("aliccp", ("single_task", "shared_bottom", "esmm", "mmoe", "ple", "aitm")),
    ("census", ("single_task", "shared_bottom", "mmoe", "ple", "aitm")),
    ("lookalike", ("metaheac",)),
])  # fmt: skip
def test_models_for_each_dataset(dataset, models):
    assert catalog.models_for(dataset) == models


def test_the_cli_reads_the_catalog_without_torch_or_pandas():
    code = (
        "import sys, mtl.cli; mtl.cli.build_parser(); print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
