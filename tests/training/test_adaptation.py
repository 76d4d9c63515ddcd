"""Per-campaign adaptation: batched equals sequential, campaigns are independent, adapting helps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl import paths
from mtl.datasets.prepared import load_metadata
from mtl.evaluation import campaign_metrics
from mtl.training.adaptation import adapt_batched, adapt_sequential, score
from mtl.training.artifacts import load_trained_model
from mtl.training.campaigns import CampaignSplit, load_campaign_split
from mtl.training.data import TensorSplit
from tests.support.metaheac import small_params

pytestmark = pytest.mark.usefixtures("single_thread")

SETTINGS = small_params().metaheac.adaptation


@pytest.fixture(scope="module")
def trained(metaheac_root):
    model, _ = load_trained_model(paths.model_dir(metaheac_root, "lookalike", "metaheac"))
    prepared = metaheac_root / "prepared" / "lookalike"
    metadata = load_metadata(prepared)
    splits = {
        name: load_campaign_split(prepared, name, metadata, torch.device("cpu"))
        for name in ("test_hot_stage1", "test_hot_stage2", "test_cold_stage1", "test_cold_stage2")
    }
    return model, {k: v.detach() for k, v in model.named_parameters()}, splits


def stages(splits, population: str) -> tuple[CampaignSplit, CampaignSplit]:
    return splits[f"{population}_stage1"], splits[f"{population}_stage2"]


def only(split: CampaignSplit, index: int) -> CampaignSplit:
    """The rows of one campaign, as a split of their own."""
    batch = split.data.take(split.rows_of(index))
    count = split.counts[index : index + 1]
    return CampaignSplit(
        split.name,
        TensorSplit(batch.features, batch.labels, batch.row_id),
        split.group[split.group == split.campaigns[index]],
        split.campaigns[index : index + 1],
        np.zeros(1, dtype=count.dtype),
        count,
    )


@pytest.mark.parametrize(
    ("population", "optimizer"), [("test_hot", "adam"), ("test_cold", "adam"), ("test_hot", "sgd")]
)
def test_batched_adaptation_equals_one_campaign_at_a_time(trained, population, optimizer):
    model, weights, splits = trained
    stage1, stage2 = stages(splits, population)
    settings = SETTINGS.model_copy(update={"optimizer": optimizer, "lr": 0.3 if optimizer == "sgd" else 0.01})
    sequential = adapt_sequential(model, weights, stage1, stage2, settings, seed=5, eval_batch_size=1000)
    labels = stage2.data.labels[:, 0].numpy()
    expected = campaign_metrics(labels, sequential, stage2.group)
    for group_size in (1, 2, 16):
        grouped = settings.model_copy(update={"group_size": group_size})
        batched = adapt_batched(model, weights, stage1, stage2, grouped, seed=5, eval_batch_size=1000)
        assert np.allclose(batched, sequential, atol=2e-5, rtol=0), group_size
        metrics = campaign_metrics(labels, batched, stage2.group)
        for key, value in expected.items():
            assert metrics[key] == pytest.approx(value, abs=1e-4), (group_size, key)
    unadapted = score(model, weights, stage2, 1000)
    assert np.abs(sequential - unadapted).max() > 1e-3  # adaptation changed the predictions
    other_seed = adapt_sequential(model, weights, stage1, stage2, settings, seed=6, eval_batch_size=1000)
    assert not np.array_equal(other_seed, sequential)  # the epoch order follows the seed


def test_a_campaign_adapted_alone_or_among_others_gets_the_same_predictions(trained):
    model, weights, splits = trained
    stage1, stage2 = stages(splits, "test_hot")
    together = adapt_batched(model, weights, stage1, stage2, SETTINGS, seed=5, eval_batch_size=1000)
    for index in range(len(stage2.campaigns)):
        one1, one2 = only(stage1, stage1.position(int(stage2.campaigns[index]))), only(stage2, index)
        alone = adapt_sequential(model, weights, one1, one2, SETTINGS, seed=5, eval_batch_size=1000)
        assert np.allclose(alone, together[stage2.rows_of(index).numpy()], atol=2e-5, rtol=0)


def test_zero_epochs_leave_the_meta_trained_predictions(trained):
    model, weights, splits = trained
    stage1, stage2 = stages(splits, "test_cold")
    settings = SETTINGS.model_copy(update={"epochs": 0})
    unadapted = score(model, weights, stage2, 1000)
    for adapt in (adapt_sequential, adapt_batched):
        kept = adapt(model, weights, stage1, stage2, settings, seed=5, eval_batch_size=1000)
        assert np.allclose(kept, unadapted, atol=1e-6, rtol=0)
