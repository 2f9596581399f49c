"""taco: multi-label litter classification experiments on TACO (Keras 3, Hydra, MLflow)."""

import os as _os

# Offline-friendly defaults, set before any heavy library is imported.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations calls home otherwise
_os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
