"""DAG-level params: their JSON-schema validation, and their translation into params.yaml overrides.

A DAG run's params override params.yaml for that run only, through the same dotted keys as
``mtl --set`` and ``dvc exp run -S``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mtl import catalog
from mtl.config import Params
from mtl.paths import project_root

# models a DAG run may ask for, and its sources: from the catalog (ESMM needs the click -> purchase
# funnel that only Ali-CCP has; MetaHeac needs campaign-grouped data)
MODEL_CHOICES = {name: catalog.models_for(name) for name in catalog.DATASETS}
SOURCES = {name: entry.sources for name, entry in catalog.DATASETS.items()}
DAG_PARAM_KEYS = (
    "source",
    "location",
    "models",
    "epochs",
    "floors",
    "tolerance",
    "synthetic_scale",
    "data_dir",
    "overrides",
)


def default_data_dir() -> Path:
    env = os.environ.get("MTL_DATA_DIR")
    return Path(env) if env else project_root() / "data"


def data_dir(dag_params: dict[str, Any]) -> Path:
    return Path(dag_params.get("data_dir") or default_data_dir())


def dag_params(dataset: str, defaults: Params) -> dict[str, dict[str, Any]]:
    """``Param`` keyword arguments (default + JSON schema) for every DAG-level param of a dataset."""
    settings = defaults.dataset(dataset)
    gate = defaults.gate.for_dataset(dataset)
    model_names = list(MODEL_CHOICES[dataset])
    epochs = _lookup(defaults.model_dump(), catalog.workflow(dataset).epochs_key)
    return {
        "source": {
            "default": settings.source,
            "type": "string",
            "enum": list(SOURCES[dataset]),
            "description": "data source (synthetic: generated in the real on-disk format)",
        },
        "location": {
            "default": settings.location,
            "type": ["null", "string"],
            "description": "URL or path overriding the source's default location (required for tianchi/csv)",
        },
        "models": {
            "default": list(settings.models),
            "type": "array",
            "items": {"type": "string", "enum": model_names},
            "minItems": 1,
            "uniqueItems": True,
            "description": "models to train",
        },
        "epochs": {"default": epochs, "type": "integer", "minimum": 1, "maximum": 1000},
        "floors": {
            "default": dict(gate.floors),
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0.0, "maximum": 1.0},
            "description": "gate: minimum test AUC per task",
        },
        "tolerance": {
            "default": gate.tolerance,
            "type": "number",
            "minimum": 0.0,
            "maximum": 1.0,
            "description": "gate: largest allowed drop of the primary metric versus the champion",
        },
        "synthetic_scale": {
            "default": 1.0,
            "type": "number",
            "exclusiveMinimum": 0.0,
            "maximum": 100.0,
            "description": "multiplier of the synthetic data sizes in params.yaml (synthetic source only)",
        },
        "data_dir": {
            "default": None,
            "type": ["null", "string"],
            "description": "data directory (default: $MTL_DATA_DIR or <project>/data)",
        },
        "overrides": {
            "default": {},
            "type": "object",
            "description": "any other params.yaml keys, as {dotted.key: value}",
        },
    }


def overrides_from_dag_params(dataset: str, dag_params: dict[str, Any]) -> dict[str, Any]:
    """Translate a DAG run's params into params.yaml overrides (dotted keys)."""
    from mtl.config import read_params_file

    out: dict[str, Any] = {}
    if dag_params.get("source"):
        out[f"datasets.{dataset}.source"] = dag_params["source"]
    if dag_params.get("location"):
        out[f"datasets.{dataset}.location"] = dag_params["location"]
    if dag_params.get("models"):
        out[f"datasets.{dataset}.models"] = list(dag_params["models"])
    if dag_params.get("epochs"):
        out[catalog.workflow(dataset).epochs_key] = int(dag_params["epochs"])
    if dag_params.get("floors") is not None:
        out[f"gate.{dataset}.floors"] = dict(dag_params["floors"])
    if dag_params.get("tolerance") is not None:
        out[f"gate.{dataset}.tolerance"] = float(dag_params["tolerance"])
    scale = float(dag_params.get("synthetic_scale") or 1.0)
    if scale != 1.0:
        synthetic = read_params_file()["datasets"][dataset]["synthetic"]
        for key in SCALED_SYNTHETIC_KEYS[dataset]:
            out[f"datasets.{dataset}.synthetic.{key}"] = _scale(synthetic[key], scale)
    out.update(dag_params.get("overrides") or {})
    return out


# Which synthetic sizes a synthetic_scale multiplies (counts of rows/users; ranges scale both ends).
SCALED_SYNTHETIC_KEYS = {
    "aliccp": ("train_rows", "test_rows"),
    "census": ("train_rows", "test_rows"),
    "lookalike": ("users", "train_rows", "hot_rows", "cold_rows"),
}


def _scale(value: Any, scale: float) -> Any:
    if isinstance(value, list):
        return [max(1, round(v * scale)) for v in value]
    return max(1, round(value * scale))


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree
