"""MetaHeac's default procedure at small size: adapting to a campaign must beat not adapting.

The network is small (as every MetaHeac test's), the procedure is params.yaml's: meta-training from the
plain baseline, disjoint support/query, the inner loop mirrored by the test-time adaptation. The figures
at default size are printed by ``benchmarks/metaheac.py``.
"""

from __future__ import annotations

import pytest

from mtl import pipeline
from mtl.config import load_params
from tests.support.metaheac import DATA, build_lookalike, one_thread

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = [
    *DATA,
    # enough cold campaigns (30-80 rows each) that their AUCs measure adaptation, not noise
    "datasets.lookalike.synthetic.cold_campaigns=30",
    "models.metaheac.embed_dim=8",
    "models.metaheac.n_experts=4",
    "models.metaheac.expert_dims=[16, 16]",
    "models.metaheac.n_critics=3",
    "models.metaheac.gate_dims=[16]",
    "metaheac.meta.batch_size=64",
    "metaheac.meta.task_count=3",
    "metaheac.baselines.batch_size=64",
    "metaheac.baselines.lr=0.01",
    "train.progress=false",
    "tracking.enabled=false",
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    params = load_params(SMALL)
    data_dir = tmp_path_factory.mktemp("metaheac_quality")
    with one_thread():
        build_lookalike(data_dir, params)
        pipeline.train("lookalike", "metaheac", data_dir=data_dir, params=params)
        return {
            split: pipeline.evaluate("lookalike", "metaheac", data_dir=data_dir, params=params, split=split)
            for split in ("test_hot", "test_cold")
        }


@pytest.mark.parametrize("split", ["test_hot", "test_cold"])
def test_adapted_metaheac_beats_the_unadapted_model(evaluated, split):
    variants = evaluated[split]["metrics"]["variants"]
    adapted, unadapted = variants["metaheac"], variants["metaheac_unadapted"]
    assert adapted["auc"] > unadapted["auc"], variants
    assert adapted["gauc"] > unadapted["gauc"], variants
