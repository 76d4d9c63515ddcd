"""Every source of every dataset, on hand-made files shaped like its public sample, goes from download
(``--from`` a folder or file) through validate, prepare, train and evaluate: the unusual samples
(purchase-enriched Ali-CCP, income-free Census, all-positive look-alike seeds) warn and never stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtl import pipeline
from mtl.config import load_params
from mtl.datasets.prepared import load_metadata
from tests.support.metaheac import SMALL as METAHEAC_SMALL
from tests.support.models import SMALL as MODELS_SMALL
from tests.support.samples import SHAPED

MODEL = {"aliccp": ("esmm", "test"), "census": ("mmoe", "test"), "lookalike": ("metaheac", "test_hot")}
ONE_EPOCH = [
    *MODELS_SMALL,
    *METAHEAC_SMALL,
    "train.epochs=1",
    "metaheac.meta.epochs=1",
    "metaheac.baselines.enabled=false",
]


def failed(summary: dict, severity: str) -> set[str]:
    """Summary columns (or tables) whose expectations of ``severity`` failed."""
    return {
        e["kwargs"].get("column") or e["table"]
        for e in summary["expectations"]
        if not e["success"] and e["severity"] == severity
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHAPED))
def test_sample_shaped_files_go_from_download_to_evaluation(name, tmp_path):
    shaped = SHAPED[name]
    dataset, (model, split) = shaped.dataset, MODEL[shaped.dataset]
    location = shaped.write(tmp_path / "from")
    params = load_params([*ONE_EPOCH, *shaped.overrides])
    data = tmp_path / "data"
    pipeline.download(
        dataset,
        data_dir=data,
        params=params,
        source=shaped.source,
        location=str(location) if location else None,
    )
    raw = json.loads(Path(pipeline.validate(dataset, data_dir=data, params=params).report).read_text())
    assert raw["success"]
    assert not failed(raw, "critical")

    prepared = json.loads(Path(pipeline.prepare(dataset, data_dir=data, params=params).report).read_text())
    assert prepared["success"]
    assert not failed(prepared, "critical")
    assert set(shaped.warnings) <= failed(prepared, "warning"), prepared["warnings"]
    assert len(prepared["warnings"]) == len(failed(prepared, "warning")) == prepared["statistics"]["warnings"]
    metadata = load_metadata(data / "prepared" / dataset)
    assert metadata.source == shaped.source
    assert not metadata.drift  # the first version: no baseline

    trained = pipeline.train(dataset, model, data_dir=data, params=params)
    assert Path(trained["model_dir"], "weights.pt").is_file()
    evaluated = pipeline.evaluate(dataset, model, data_dir=data, params=params, split=split)
    assert Path(evaluated["metrics_file"]).is_file()
    assert evaluated["metrics"]
