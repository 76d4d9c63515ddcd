"""The pyfunc model: raw feature columns in, the evaluated probabilities out; served over HTTP."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from mtl import paths, pipeline
from mtl.datasets import get_dataset
from mtl.errors import TrainingError
from mtl.serving.predictor import Predictor
from mtl.tracking.runs import RUN_FILE
from mtl.tracking.store import connect
from mtl.training import artifacts
from tests.support.tracked import free_port, registry_params, stop_process_group, wait_for_http

OUTPUTS = ["p_click", "p_purchase", "p_ctcvr"]


def served_input(data_dir: Path, rows: int) -> pd.DataFrame:
    """The first test rows as raw feature columns, one multi-valued field as space-separated text."""
    prepared = paths.prepared_dir(data_dir, "aliccp")
    frame = get_dataset("aliccp").raw_feature_frame(prepared, "test", rows=rows)
    frame["109_14"] = [" ".join(map(str, ids)) for ids in frame["109_14"]]
    return frame


def test_pyfunc_reproduces_the_evaluated_predictions(tracked_model):
    params = registry_params(tracked_model.uri)
    model_dir = paths.model_dir(tracked_model.data_dir, "aliccp", "mmoe")
    model_uri = json.loads((model_dir / RUN_FILE).read_text())["model_uri"]
    with connect(params):
        model = mlflow.pyfunc.load_model(model_uri)
    frame = served_input(tracked_model.data_dir, rows=400)
    predicted = model.predict(frame)
    assert list(predicted.columns) == OUTPUTS
    evaluated = pd.read_parquet(tracked_model.evaluation["predictions"]).head(400)
    for column in OUTPUTS:
        np.testing.assert_allclose(predicted[column].to_numpy(), evaluated[column].to_numpy(), atol=1e-6)

    inputs = {spec.name: str(spec.type) for spec in model.metadata.signature.inputs.inputs}
    assert inputs["109_14"] == "Any"  # a list or a string of ids
    with connect(params):
        requirements = Path(mlflow.pyfunc.get_model_dependencies(model_uri))
    assert "torch==2.13.0" in requirements.read_text().split()


def test_weights_are_loaded_without_unpickling_code(tracked_model, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(paths.model_dir(tracked_model.data_dir, "aliccp", "mmoe"), model_dir)
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (model_dir / artifacts.WEIGHTS).write_bytes(pickle.dumps(Payload()))
    with pytest.raises(TrainingError, match="not a readable checkpoint"):
        Predictor(model_dir, paths.prepared_dir(tracked_model.data_dir, "aliccp"))
    assert not marker.exists()


@pytest.mark.slow
def test_served_champion_answers_invocations(store, tracked_model, tmp_path):
    wide = registry_params(
        store.tracking.uri,
        tmp_path / "artifacts",
        "gate.aliccp.floors={click: 0.0, ctcvr: 0.0}",
        "gate.aliccp.prediction_rate_ratio=[0.001, 1000.0]",
    )
    decision = pipeline.gate(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=wide, mlflow_run_id=tracked_model.run_id
    )
    registered = pipeline.register(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=wide, decision=decision
    )
    assert registered["decision"] == "promoted"

    frame = served_input(tracked_model.data_dir, rows=5)
    odd = frame.iloc[[0]].copy()
    odd[["101", "121"]] = [[10**12, None]]  # an unseen id and a missing one
    odd["110_14"] = ["12345678 not-an-id"]
    frame = pd.concat([frame, odd], ignore_index=True)
    with connect(wide):
        expected = mlflow.pyfunc.load_model("models:/aliccp-mmoe@champion").predict(frame)

    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store.tracking.uri,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/aliccp-mmoe@champion"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server)
        payload = {"dataframe_split": frame.astype(object).where(frame.notna(), None).to_dict(orient="split")}
        payload["dataframe_split"].pop("index")
        response = requests.post(f"http://127.0.0.1:{port}/invocations", json=payload, timeout=60)
        assert response.status_code == 200, response.text
        answered = pd.DataFrame(response.json()["predictions"])
    finally:
        stop_process_group(server)
    assert list(answered.columns) == OUTPUTS
    assert len(answered) == len(frame)
    np.testing.assert_allclose(answered.to_numpy(), expected.to_numpy(), atol=1e-6)
    assert ((answered > 0) & (answered <= 1)).all().all()
