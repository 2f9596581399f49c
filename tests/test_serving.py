"""A logged model served by MLflow itself: `mlflow models serve` answers on 127.0.0.1."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import numpy as np
import pytest

from taco.training.job import train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, server: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer /ping in {seconds} s")


@pytest.mark.subprocess
@pytest.mark.slow
def test_mlflow_models_serve_answers_with_labels_and_scores(
    compose_cfg, tmp_path, tiny_overrides, mlflow_uri
):
    train(compose_cfg(tiny_overrides(tmp_path)))
    client = mlflow.MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    images = np.concatenate([model.input_example, np.zeros_like(model.input_example)])
    expected = model.predict(images)

    port = _free_port()
    bin_dir = os.path.dirname(sys.executable)  # MLflow starts `uvicorn` from PATH
    command = [
        os.path.join(bin_dir, "mlflow"),
        "models",
        "serve",
        "-m",
        f"runs:/{run.info.run_id}/model",
    ]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    server = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, server)
        body = json.dumps({"inputs": images.tolist()}).encode()
        request = urllib.request.Request(
            f"{url}/invocations", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            predictions = json.loads(answer.read())["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    assert [p["labels"] for p in predictions] == list(expected["labels"])
    names = [c for c in expected.columns if c.startswith("score/")]
    served = np.array([[p[c] for c in names] for p in predictions])
    np.testing.assert_allclose(served, expected[names].to_numpy(), rtol=1e-5, atol=1e-6)
    assert all(isinstance(p[f"decision/{names[0][6:]}"], bool) for p in predictions)
