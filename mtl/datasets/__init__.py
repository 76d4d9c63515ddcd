"""The dataset registry: one entry per dataset, each described once (see ``base.Dataset``)."""

from __future__ import annotations

from mtl.datasets.base import Dataset
from mtl.errors import ConfigError


def _registry() -> dict[str, Dataset]:
    from mtl.datasets.aliccp import AliCCP
    from mtl.datasets.census import Census
    from mtl.datasets.lookalike import Lookalike

    return {ds.name: ds for ds in (AliCCP(), Census(), Lookalike())}


DATASET_NAMES = ("aliccp", "census", "lookalike")


def get_dataset(name: str) -> Dataset:
    registry = _registry()
    if name not in registry:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return registry[name]
