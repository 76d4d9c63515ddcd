"""Log a trained model directory as an MLflow pyfunc (models-from-code) with everything it needs to serve.

The logged model holds the weights and ``model.json``, the prepared data's encoders (``metadata.json``,
``encoders.json``, ``vocab/``), a copy of the ``mtl`` package (``code_paths``: a served model runs the
code it was trained with), a signature and an input example of raw feature rows, and pinned
``pip_requirements`` (inferring them costs seconds per model and picks up local wheel labels).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.types.schema import AnyType, ColSpec, Schema

from mtl.datasets.prepared import ENCODERS_FILE, METADATA_FILE, load_metadata
from mtl.serving.predictor import Predictor
from mtl.training import artifacts

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the mtl package
MODEL_NAME = "model"  # the logged model's name inside its run
EXAMPLE_ROWS = 3
# what a served model imports; versions are the installed ones, without local labels such as +cpu
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "pyarrow", "pydantic", "pyyaml")


def log_pyfunc(model_dir: Path, prepared_dir: Path) -> mlflow.models.model.ModelInfo:
    """Log ``model_dir`` with the encoders of ``prepared_dir`` as a pyfunc in the active run."""
    with tempfile.TemporaryDirectory(prefix="mtl-pyfunc-") as tmp:
        staging = Path(tmp)
        files = _stage(Path(model_dir), Path(prepared_dir), staging)
        code = files.pop("code")
        predictor = Predictor(files["model_dir"], files["encoders"])
        example = _input_example(predictor, Path(prepared_dir))
        signature = _signature(predictor, example)
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(PYFUNC_FILE),
            artifacts={key: str(path) for key, path in files.items()},
            code_paths=[str(code / "mtl")],
            signature=signature,
            input_example=_jsonable(example),
            pip_requirements=requirements(),
            metadata={
                "mtl_dataset": predictor.config["dataset"],
                "mtl_model": predictor.config["model"],
                "outputs": predictor.columns,
                "input_columns": predictor.codec.columns(),
            },
        )


def requirements() -> list[str]:
    """Exact pins of what the served model imports."""
    return [f"{name}=={package_metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


def _stage(model_dir: Path, prepared_dir: Path, staging: Path) -> dict[str, Path]:
    """Copy the files the pyfunc needs into ``staging``: model_dir/, encoders/ and code/mtl."""
    model_copy = staging / "model_dir"
    model_copy.mkdir()
    for name in (artifacts.MODEL_CONFIG, artifacts.WEIGHTS):
        shutil.copy2(model_dir / name, model_copy / name)
    encoders = staging / "encoders"
    encoders.mkdir()
    for name in (METADATA_FILE, ENCODERS_FILE):
        shutil.copy2(prepared_dir / name, encoders / name)
    if (prepared_dir / "vocab").is_dir():
        shutil.copytree(prepared_dir / "vocab", encoders / "vocab")
    code = staging / "code"
    shutil.copytree(PACKAGE_DIR, code / "mtl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return {"model_dir": model_copy, "encoders": encoders, "code": code}


def _input_example(predictor: Predictor, prepared_dir: Path) -> pd.DataFrame:
    """A few training rows decoded to raw feature columns (never test rows)."""
    from mtl.datasets.prepared import read_split

    metadata = load_metadata(prepared_dir)
    split = "train" if "train" in metadata.splits else next(iter(metadata.splits))
    arrays = read_split(prepared_dir, split, metadata)
    return predictor.codec.decode(arrays.take(slice(0, EXAMPLE_ROWS)))


def _signature(predictor: Predictor, example: pd.DataFrame) -> ModelSignature:
    """Inferred from the example, except that id columns accept any JSON value: a list or a string of
    ids for a multi-valued field, and null for a missing id (an integer column would refuse it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MLflow's hint about integer columns: handled here
        inferred = infer_signature(_jsonable(example), predictor.predict(example))
    lists = set(predictor.codec.multi_valued())
    inputs = [
        ColSpec(AnyType(), spec.name)
        if spec.name in lists or getattr(spec.type, "name", "") in ("long", "integer")
        else spec
        for spec in inferred.inputs.inputs  # type: ignore[union-attr]
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=inferred.outputs)


def _jsonable(frame: pd.DataFrame) -> pd.DataFrame:
    """List cells as Python lists (arrays do not serialise into the example's JSON)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = [_plain(value) for value in out[column]]
    return out


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value
