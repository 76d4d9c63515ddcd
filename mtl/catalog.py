"""What can be asked for, readable without torch, pandas or Arrow: datasets, their sources and splits,
models and how each is trained. The CLI checks its arguments against this catalog before anything is
created, in a few milliseconds; the pipeline, the DAGs and their params dispatch through it.

The heavy registries stay the authority on behaviour: ``mtl.datasets`` (each dataset's declaration)
and ``mtl.models.MODELS`` (the network classes, loaded from the paths below).
``tests/test_catalog.py`` checks that this catalog and those registries agree.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mtl.errors import ConfigError


@dataclass(frozen=True)
class Workflow:
    """How the models of one kind are trained and scored: two functions ``module:name`` taking
    ``(dataset, [model,] *, data_dir, params, ...)``; ``per_model`` says whether they take the model."""

    name: str
    train: str
    evaluate: str
    per_model: bool
    epochs_key: str  # the params key a DAG run's ``epochs`` overrides
    evaluation_splits: tuple[str, ...]  # the splits a trained model is scored on

    def call(self, which: str, dataset: str, model: str, **kwargs: Any) -> Any:
        module, _, function = getattr(self, which).partition(":")
        target: Callable[..., Any] = getattr(importlib.import_module(module), function)
        return target(dataset, model, **kwargs) if self.per_model else target(dataset, **kwargs)


SUPERVISED = Workflow(
    name="supervised",
    train="mtl.training.workflow:train_model",
    evaluate="mtl.training.workflow:evaluate_model",
    per_model=True,
    epochs_key="train.epochs",
    evaluation_splits=("test",),
)
META = Workflow(
    name="meta",
    train="mtl.training.metaheac_workflow:train_metaheac",
    evaluate="mtl.training.metaheac_workflow:evaluate_metaheac",
    per_model=False,
    epochs_key="metaheac.meta.epochs",
    evaluation_splits=("test_hot", "test_cold"),
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: str  # ``module:Class`` of the network (mtl.models.MODELS holds the same classes)
    workflow: Workflow
    needs_funnel: bool = False  # a click -> purchase funnel (ESMM)
    needs_campaigns: bool = False  # campaign-grouped look-alike data (MetaHeac)


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    sources: tuple[str, ...]
    needs_location: tuple[str, ...]  # sources without a public download URL (--from required)
    splits: tuple[str, ...]
    funnel: bool = False
    campaigns: bool = False


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry("single_task", "mtl.models.single_task:SingleTask", SUPERVISED),
        ModelEntry("shared_bottom", "mtl.models.shared_bottom:SharedBottom", SUPERVISED),
        ModelEntry("esmm", "mtl.models.esmm:ESMM", SUPERVISED, needs_funnel=True),
        ModelEntry("mmoe", "mtl.models.mmoe:MMoE", SUPERVISED),
        ModelEntry("ple", "mtl.models.ple:PLE", SUPERVISED),
        ModelEntry("aitm", "mtl.models.aitm:AITM", SUPERVISED),
        ModelEntry("metaheac", "mtl.models.metaheac:MetaHeac", META, needs_campaigns=True),
    )
}

DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry(
            "aliccp",
            sources=("paddlerec", "tianchi", "csv", "synthetic"),
            needs_location=("tianchi", "csv"),
            splits=("train", "valid", "test"),
            funnel=True,
        ),
        DatasetEntry(
            "census",
            sources=("uci", "paddlerec", "csv", "synthetic"),
            needs_location=("csv",),
            splits=("train", "valid", "test"),
        ),
        DatasetEntry(
            "lookalike",
            sources=("paddlerec", "synthetic"),
            needs_location=(),
            splits=("train", "test_hot_stage1", "test_hot_stage2", "test_cold_stage1", "test_cold_stage2"),
            campaigns=True,
        ),
    )
}


def supervised_models() -> list[str]:
    """The models trained by plain supervision on a multi-task dataset (all but the meta-learned ones)."""
    return [name for name, entry in MODELS.items() if entry.workflow is SUPERVISED]


def dataset(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def model(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def fits(model_name: str, dataset_name: str) -> str | None:
    """Why ``model`` cannot train on ``dataset`` (one sentence), or None when it can."""
    entry, data = model(model_name), dataset(dataset_name)
    if entry.needs_funnel and not data.funnel:
        return (
            f"{entry.name} needs a dataset whose two tasks form a click -> purchase funnel; "
            f"{data.name} has none (models for {data.name}: {', '.join(models_for(data.name))})"
        )
    if entry.needs_campaigns != data.campaigns:
        need = "campaign-grouped look-alike data" if entry.needs_campaigns else "a multi-task dataset"
        return f"{entry.name} needs {need}; models for {data.name}: {', '.join(models_for(data.name))}"
    return None


def models_for(dataset_name: str) -> tuple[str, ...]:
    """The models that can train on a dataset, in registry order."""
    data = dataset(dataset_name)
    return tuple(
        name
        for name, entry in MODELS.items()
        if entry.needs_campaigns == data.campaigns and (data.funnel or not entry.needs_funnel)
    )


def workflow(dataset_name: str) -> Workflow:
    """The one workflow every model of a dataset follows (the DAG's shape depends on it)."""
    kinds = {MODELS[name].workflow for name in models_for(dataset_name)}
    if len(kinds) != 1:
        raise ConfigError(f"the models of {dataset_name} follow {len(kinds)} workflows; expected one")
    return kinds.pop()


def evaluation_splits(dataset_name: str, model_name: str) -> tuple[str, ...]:
    """The splits ``mtl evaluate`` accepts: any split of the dataset for a model scored row by row,
    the campaign populations (adapt on stage1, score stage2) for a campaign model."""
    entry = model(model_name)
    if entry.workflow.per_model:
        return dataset(dataset_name).splits
    return entry.workflow.evaluation_splits


def check(dataset_name: str, model_name: str, split: str | None = None) -> None:
    """A ConfigError naming the choices when the model is unknown, cannot train on the dataset, or
    (``split`` given) has no such split to be scored on."""
    reason = fits(model_name, dataset_name)
    if reason:
        raise ConfigError(reason)
    if split is not None:
        choices = evaluation_splits(dataset_name, model_name)
        if split not in choices:
            raise ConfigError(
                f"{dataset_name}/{model_name} has no split {split!r} to score; choose one of "
                f"{', '.join(sorted(choices))}"
            )
