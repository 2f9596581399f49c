"""MLflow's models-from-code entry for a taco model: `mlflow.pyfunc.log_model(python_model=<this
file>)` copies it into the logged model, and loading the model runs it (taco must be installed)."""

from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.models import set_model

from taco.models.registry import load_model
from taco.tracking.logged_model import prediction_frame


class TacoPyfunc(mlflow.pyfunc.PythonModel):
    """Images in; the decided labels, each class's score and decision out (tuned thresholds)."""

    def load_context(self, context: Any) -> None:
        self.model = load_model(context.artifacts["taco"])

    # np.ndarray: a hint MLflow accepts without deriving a schema (the signature is explicit)
    def predict(self, context: Any, model_input: np.ndarray, params: dict | None = None) -> Any:
        return prediction_frame(self.model, model_input)


set_model(TacoPyfunc())
