"""A run's model as MLflow knows models: a pyfunc with a signature, found by any MLflow reference.

`log_pyfunc` logs a saved taco model folder (a classifier's `save`) as the run's logged model
`model`: MLflow's pyfunc format around the folder, with an explicit signature (uint8 images in;
the label decisions and each class's score out) and one image as input example. So
`mlflow.pyfunc.load_model`, the Model Registry and `mlflow models serve` take it, and
`taco-predict`/`taco-eval` still read the folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from taco.config import installed_versions
from taco.errors import TacoError
from taco.metrics import HEADLINE
from taco.models.registry import LoadedModel, load_model
from taco.tracking.tags import Tag

MODEL_NAME = "model"  # runs:/<run id>/model
ENTRY = Path(__file__).with_name("pyfunc_entry.py")  # MLflow's models-from-code file
# what the pyfunc needs besides taco itself (a served model runs in an environment with taco)
_REQUIREMENTS = ("keras", "numpy", "pandas", "scikit-learn", "mlflow", "tensorflow", "jax")


def signature(class_names: list[str], image_size: int) -> Any:
    """uint8 (n, size, size, 3) in; `labels`, `score/<class>`, `decision/<class>` out."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    columns = [ColSpec("string", "labels")]
    columns += [ColSpec("double", f"score/{name}") for name in class_names]
    columns += [ColSpec("boolean", f"decision/{name}") for name in class_names]
    images = TensorSpec(np.dtype(np.uint8), (-1, image_size, image_size, 3))
    return ModelSignature(inputs=Schema([images]), outputs=Schema(columns))


def requirements() -> list[str]:
    """The installed versions of what loading the model imports (none inferred: that would
    load the model once more in a subprocess)."""
    return [f"{name}=={version}" for name, version in installed_versions(_REQUIREMENTS).items()]


def log_pyfunc(folder: Path, example: np.ndarray, info: Mapping[str, Any]) -> str:
    """Log `folder` as the active run's model `model`; returns its `models:/` URI."""
    import mlflow

    logged = mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=str(ENTRY),
        artifacts={"taco": str(folder)},
        signature=signature(list(info["class_names"]), int(info["image_size"])),
        input_example=np.asarray(example, np.uint8),
        pip_requirements=requirements(),
        metadata={"taco": {k: info[k] for k in ("kind", "model", "dataset") if k in info}},
    )
    return logged.model_uri


def prediction_frame(model: LoadedModel, images: np.ndarray) -> Any:
    """The pyfunc's answer: one row per image, the decided labels, then scores and decisions."""
    import pandas as pd

    return pd.DataFrame(model.columns(model.predict(np.asarray(images, np.uint8))))


def model_uri(reference: str, client: Any) -> str:
    """`models:/NAME/VERSION`, `models:/<id>`, `runs:/<run id>/model`, a run id or the first
    characters of one (as the UI and `taco-compare` show them), or `last` (the newest finished
    run) -> an MLflow model URI."""
    if reference.startswith(("models:/", "runs:/")):
        return reference
    if reference == "last":
        return f"runs:/{last_run(client)}/{MODEL_NAME}"
    if not reference.isalnum():
        raise TacoError(
            f"{reference!r} is not a model reference: give models:/NAME/VERSION, "
            "runs:/RUN_ID/model, a run id or its first characters"
        )
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, filter_string=f"attributes.run_id LIKE '{reference.lower()}%'", max_results=3
    )
    if not runs:
        raise TacoError(f"no run id starts with {reference!r} in {client.tracking_uri}")
    if len(runs) > 1:
        ids = ", ".join(r.info.run_id for r in runs)
        raise TacoError(f"{reference!r} starts several run ids ({ids}): give more characters")
    return f"runs:/{runs[0].info.run_id}/{MODEL_NAME}"


def last_run(client: Any) -> str:
    """The newest finished training run (not a sweep's parent) of the store."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    for run in runs:
        if run.data.tags.get(Tag.SWEEP) != "parent":
            return run.info.run_id
    raise TacoError(f"no finished run in {client.tracking_uri}: train one first (make train)")


def load_logged_model(reference: str, tracking_uri: str) -> LoadedModel:
    """A model logged by a run (or registered), downloaded from the store and loaded; the
    download is removed once loaded (MLflow's own temporary folder would stay behind: a VGG16
    is 150 MB a call)."""
    with downloaded_model(reference, tracking_uri) as (folder, _):
        return load_model(folder)  # a loader reads its files here, not later


@contextlib.contextmanager
def downloaded_model(reference: str, tracking_uri: str) -> Iterator[tuple[Path, dict]]:
    """A logged or registered model's folder, downloaded for the `with` block, and where it
    came from: its `models:/` or `runs:/` URI and the run that logged it."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per small file
    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    uri = model_uri(reference, client)
    with tempfile.TemporaryDirectory(prefix="taco-model-") as tmp:
        try:
            location = artifact_location(client, uri)
            folder = mlflow.artifacts.download_artifacts(
                artifact_uri=location, tracking_uri=tracking_uri, dst_path=tmp
            )
            run_id = source_run_id(uri, client)
            tags = client.get_run(run_id).data.tags if run_id else {}
        except Exception as exc:
            raise TacoError(f"cannot fetch the model {uri} from {tracking_uri}: {exc}") from None
        source = {"model_uri": uri, "run_id": run_id, "tracking_uri": tracking_uri}
        if tags.get(Tag.GIT_COMMIT):  # the code that trained it
            source[Tag.GIT_COMMIT] = tags[Tag.GIT_COMMIT]
        yield Path(folder), source


def source_run_id(reference: str, client: Any) -> str | None:
    """The training run a model reference comes from (None for a logged model without one)."""
    uri = model_uri(reference, client)
    if uri.startswith("runs:/"):
        return uri[len("runs:/") :].partition("/")[0]
    path = uri[len("models:/") :]
    if "/" in path:  # NAME/VERSION
        name, _, version = path.partition("/")
        return client.get_model_version(name, version).run_id
    return client.get_logged_model(path).source_run_id


def artifact_location(client: Any, uri: str) -> str:
    """Where a model URI's files are, asked of `client`'s store (MLflow's own resolution of
    `runs:/` and `models:/` reads the process-wide tracking URI)."""
    if uri.startswith("runs:/"):
        run_id, _, name = uri[len("runs:/") :].partition("/")
        run = client.get_run(run_id)
        for output in run.outputs.model_outputs or []:
            logged = client.get_logged_model(output.model_id)
            if logged.name == name:
                return logged.artifact_location
        return f"{run.info.artifact_uri}/{name}"  # logged as plain artifacts
    path = uri[len("models:/") :]
    if "/" in path:  # NAME/VERSION
        name, _, version = path.partition("/")
        path = client.get_model_version(name, version).source[len("models:/") :]
    return client.get_logged_model(path).artifact_location


def register_best(client: Any, comparison: Any, name: str) -> Any:
    """Register the model of the sweep's best job (highest test macro F1 of the best model on
    average over seeds) as a new version of `name`; returns the model version."""
    label = HEADLINE["f1_macro"]

    def mean(variant: str) -> float:
        value = comparison.mean(label, variant)
        return -1.0 if np.isnan(value) else value

    variant = max(comparison.variants, key=mean)
    run = max(comparison.runs[variant], key=lambda r: r.data.metrics.get("test/f1_macro", -1.0))
    outputs = [o.model_id for o in getattr(run.outputs, "model_outputs", None) or []]
    if not outputs:
        raise TacoError(
            f"run {run.info.run_id} ({variant}) logged no model: was callbacks.log_model off?"
        )
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name, description="taco multi-label litter classifier")
    score = run.data.metrics.get("test/f1_macro", float("nan"))
    with process_tracking_uri(client.tracking_uri):  # MLflow looks the model up there
        return client.create_model_version(
            name,
            source=f"models:/{outputs[-1]}",
            run_id=run.info.run_id,
            model_id=outputs[-1],
            tags={"variant": variant, "test_f1_macro": f"{score:.4f}"},
            description=f"{variant}: test macro F1 {score:.3f} "
            f"(sweep {comparison.parent.info.run_id})",
        )


def log_export(
    tracking_uri: str, run_id: str, folder: Path, label: str, register: str | None, note: str
) -> Any:
    """An export's folder (file, sidecar, check) logged under `export/<label>/` of its source
    run; with `register`, a new version of that registered model whose source is the logged
    folder and whose description is the check (`note`). Returns the version, or None."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    path = f"export/{label}"
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = folder / "model.onnx"
        logged = onnx_model_folder(folder, Path(tmp) / "m") if onnx_file.is_file() else folder
        client.log_artifacts(run_id, str(logged), path)
    if not register:
        return None
    try:
        client.get_registered_model(register)
    except Exception:
        client.create_registered_model(register, description="taco model exported for devices")
    source = f"{client.get_run(run_id).info.artifact_uri}/{path}"
    with process_tracking_uri(tracking_uri):
        return client.create_model_version(
            register, source=source, run_id=run_id, tags={"export": label}, description=note
        )


def onnx_model_folder(folder: Path, dest: Path) -> Path:
    """An ONNX export as an MLflow model of the `onnx` flavour (one file, its sidecar, check and
    cost beside it): `mlflow.onnx.load_model` and `mlflow.pyfunc.load_model` take its logged
    folder and its registered version."""
    import mlflow.onnx
    import onnx
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    info = json.loads((folder / "model.onnx.json").read_text())  # taco-export's sidecar
    size, classes = int(info["image_size"]), len(info["class_names"])
    mlflow.onnx.save_model(
        onnx.load(str(folder / "model.onnx")),
        str(dest),
        signature=ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, size, size, 3))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes))]),
        ),
        pip_requirements=[
            f"{n}=={v}" for n, v in installed_versions(("onnx", "onnxruntime")).items()
        ],
        save_as_external_data=False,  # one file, as the device gets it
        metadata={"taco": {k: info[k] for k in ("kind", "format", "quantize") if k in info}},
    )
    for given in folder.iterdir():
        if given.name != "model.onnx":
            shutil.copy2(given, dest / given.name)
    return dest


@contextlib.contextmanager
def process_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's SQL registry finds a `models:/<id>` source through the process-wide tracking URI,
    not the client's: point it at the client's store for the call, then restore both the
    process-wide URI and $MLFLOW_TRACKING_URI (which `mlflow.set_tracking_uri` also writes)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils  # where MLflow keeps the process URI

    saved_uri, saved_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_uri)  # None: unset, as it was
        if saved_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env
