"""The model registry: ``{name: class}``. Adding a model = one file here + one line below (+ its
hyperparameters: a typed section in ``mtl/config.py`` and defaults under ``models:`` in params.yaml).

Every model follows the output convention documented in ``mtl.models.base``.
"""

from __future__ import annotations

from mtl.config import Params
from mtl.datasets.prepared import DatasetMetadata
from mtl.errors import ConfigError
from mtl.models.aitm import AITM
from mtl.models.base import JOINT_OUTPUT, ModelSpec, MultiTaskModel
from mtl.models.esmm import ESMM
from mtl.models.layers import FeatureBatch
from mtl.models.metaheac import MetaHeac
from mtl.models.mmoe import MMoE
from mtl.models.ple import PLE
from mtl.models.shared_bottom import SharedBottom
from mtl.models.single_task import SingleTask

MODELS: dict[str, type[MultiTaskModel]] = {
    cls.name: cls for cls in (SingleTask, SharedBottom, ESMM, MMoE, PLE, AITM, MetaHeac)
}

__all__ = [
    "JOINT_OUTPUT",
    "MODELS",
    "FeatureBatch",
    "ModelSpec",
    "MultiTaskModel",
    "build_model",
    "model_class",
]


def model_class(name: str) -> type[MultiTaskModel]:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]


def build_model(name: str, spec: ModelSpec | DatasetMetadata, params: Params | dict) -> MultiTaskModel:
    """A freshly initialised model for a dataset, from ``params.models.<name>`` (or a hyperparameter dict)."""
    cls = model_class(name)
    if isinstance(spec, DatasetMetadata):
        spec = ModelSpec.from_metadata(spec)
    hyper = params.model(name) if isinstance(params, Params) else cls.params_class.model_validate(params)
    return cls(spec, hyper)
