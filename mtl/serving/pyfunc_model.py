"""The models-from-code file MLflow loads for every mtl model (``mlflow.pyfunc.log_model(python_model=
<this file>)``). Artifacts: ``model_dir`` (model.json + weights.pt) and ``encoders`` (the prepared
data's metadata.json, encoders.json and vocab/). Input: raw feature columns; output: ``p_<output>``."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd


class MultiTaskPyfunc(mlflow.pyfunc.PythonModel):
    """Raw feature DataFrame in, one probability column per scored output out."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from mtl.serving.predictor import Predictor

        self.predictor = Predictor(context.artifacts["model_dir"], context.artifacts["encoders"])

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        return self.predictor.predict(pd.DataFrame(model_input))


mlflow.models.set_model(MultiTaskPyfunc())
