"""`make ui-shots`: the MLflow UI as a user meets it after a sweep, photographed for the README.

A small sweep (CNN and VGG16, two seeds each, tiny images) runs into a throwaway store,
`taco-compare` logs its table to the parent, `mlflow server` serves the store on 127.0.0.1 on a
free port, and headless Chromium (Debian's `/usr/bin/chromium`, driven by Playwright) opens the
experiment page with the parent expanded, the parent run, the compare view of the children, the
parent's table and a child's error gallery, saving `docs/ui_*.png`. Each page is checked by its
DOM (the run names and table rows it must hold), not by pixels; the server stops at the end,
whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from taco.errors import TacoError

BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
# without the networking flags Chromium keeps calling Google's hosts, refused on closed networks
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPERIMENT = "ui_demo"
SWEEP = [
    "experiment=compare_models",
    "model=cnn,vgg16",
    "seed=1,2",
    "study.max_epochs.cnn=2",
    "study.max_epochs.vgg16=2",
    "study.image_size.cnn=32",
    "dataset.generator.num_images=64",
    "dataset.num_workers=0",
    f"logger.experiment_name={EXPERIMENT}",
]
SHOTS = (
    "ui_experiment.png",
    "ui_parent_run.png",
    "ui_compare.png",
    "ui_table.png",
    "ui_gallery.png",
)


def run_sweep(workdir: Path) -> str:
    """The sweep and its comparison in a new store under `workdir`; returns the store's URI."""
    uri = f"sqlite:///{workdir}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    paths = [f"paths.data_dir={workdir}/data", f"paths.output_dir={workdir}/out"]
    commands = [
        [str(BIN / "taco-train"), *SWEEP, *paths, f"hydra.sweep.dir={workdir}/multi"],
        [str(BIN / "taco-compare"), "--experiment", EXPERIMENT, "--out", f"{workdir}/compare"],
    ]
    for command in commands:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise TacoError(f"{Path(command[0]).name} failed:\n{done.stderr[-3000:]}")
    return uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_ui(uri: str, seconds: float = 120) -> Iterator[str]:
    """`mlflow server` over the store on 127.0.0.1; yields its address, stops it at the end."""
    port = free_port()
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", uri]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + seconds
        while not _answers(f"{base}/health"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise TacoError(f"mlflow server did not start: {server.stderr.read()[-2000:]!r}")
            time.sleep(0.5)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def sweep_runs(uri: str) -> tuple[str, Any, list[Any]]:
    """(experiment id, parent run, child runs in job order) of the sweep in the store."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    runs = client.search_runs([experiment_id])
    parent = next(r for r in runs if r.data.tags.get("taco.sweep") == "parent")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    children.sort(key=lambda r: int(r.data.tags.get("sweep_job", 0)))
    return experiment_id, parent, children


def shoot(base: str, uri: str, out: Path, chromium: str = CHROMIUM) -> dict[str, str]:
    """The four pages as PNGs under `out`; returns each page's visible text (for checks)."""
    from playwright.sync_api import sync_playwright

    experiment_id, parent, children = sweep_runs(uri)
    out.mkdir(parents=True, exist_ok=True)
    texts: dict[str, str] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 940})
            pages = Pages(page, base, experiment_id, parent, children, uri)
            for name, visit in zip(SHOTS, pages.visits(), strict=True):
                texts[name] = visit()
                page.screenshot(path=str(out / name))
        finally:
            browser.close()
    return texts


class Pages:
    """How a user reaches each page, with what must be on it before the shot."""

    def __init__(
        self, page: Any, base: str, experiment_id: str, parent: Any, children: list, uri: str
    ) -> None:
        self.page, self.base, self.experiment_id = page, base, experiment_id
        self.parent, self.children, self.uri = parent, children, uri

    def visits(self) -> list:
        return [self.experiment, self.parent_run, self.compare, self.table, self.gallery]

    def _open(self, route: str, expect: str) -> None:
        self.page.goto(f"{self.base}/#/{route}")
        self.page.get_by_text(expect, exact=False).first.wait_for(timeout=60_000)
        close = self.page.locator('button[aria-label="Close"]')  # the assistant's side panel
        if close.count():
            close.first.click()

    def _text(self) -> str:
        self.page.wait_for_timeout(1500)  # charts and tables settle
        return self.page.inner_text("body")

    def experiment(self) -> str:
        """The experiment on its training runs: MLflow 3.17 opens every experiment on the GenAI
        view until the sidebar's "Model training" toggle is used once (then it keeps it), or
        the address says `?workflowType=machine_learning` (the links `make ui` prints)."""
        self._open(f"experiments/{self.experiment_id}", "Model training")
        self.page.get_by_text("Model training", exact=True).first.click()  # kept from now on
        self.page.get_by_text(self.parent.info.run_name).first.wait_for(timeout=60_000)
        self.page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()
        self.page.get_by_text(self.children[0].info.run_name).first.wait_for(timeout=30_000)
        return self._text()

    def parent_run(self) -> str:
        route = f"experiments/{self.experiment_id}/runs/{self.parent.info.run_id}"
        self._open(route, "compare/f1_macro")
        return self._text()

    def compare(self) -> str:
        ids = json.dumps([c.info.run_id for c in self.children])
        self._open(f'compare-runs?runs={ids}&experiments=["{self.experiment_id}"]', "Run details")
        self._choose("Clear All", params=["model.name", "seed"], metrics=["test/f1_macro"])
        return self._text()

    def _choose(self, clear: str, params: list[str], metrics: list[str]) -> None:
        """The parallel-coordinates plot over the sweep's own axes (the UI picks the first
        parameters in alphabetical order)."""
        self.page.get_by_role("button", name=clear).click()
        boxes = self.page.locator(".ant-select-selector, [role=combobox]")
        for box, names in ((boxes.nth(0), params), (boxes.nth(1), metrics)):
            for name in names:
                box.click()
                self.page.keyboard.type(name)
                self.page.locator(
                    f'.du-bois-light-select-item-option[title="{name}"]'
                ).first.click()
            self.page.keyboard.press("Escape")

    def table(self) -> str:
        route = (
            f"experiments/{self.experiment_id}/runs/{self.parent.info.run_id}"
            "/artifacts/comparison/table.json"
        )
        self._open(route, "View as table")
        self.page.get_by_text("cnn mean").first.wait_for(timeout=30_000)
        return self._text()

    def gallery(self) -> str:
        """A child's error gallery for its most frequent class, in the artifact view."""
        import mlflow

        child = self.children[0]
        client = mlflow.MlflowClient(self.uri)
        sheets = [a.path for a in client.list_artifacts(child.info.run_id, "analysis/galleries")]
        # a name without spaces: the artifact route does not decode %20
        plain = [p for p in sheets if " " not in p]
        shown = next((p for p in plain if p.endswith("/Bottle.png")), plain[0])
        route = f"experiments/{self.experiment_id}/runs/{child.info.run_id}/artifacts/{shown}"
        self._open(route, "galleries")
        self.page.locator("img[src^='blob:']").first.wait_for(timeout=30_000)
        return self._text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ui-shots", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the PNGs go")
    parser.add_argument("--chromium", default=CHROMIUM, help="the Chromium executable")
    args = parser.parse_args(argv)
    if not Path(args.chromium).is_file():
        print(
            f"ui-shots: no Chromium at {args.chromium}: apt-get install chromium", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="taco-ui-") as tmp:
        uri = run_sweep(Path(tmp))
        with mlflow_ui(uri) as base:
            shoot(base, uri, args.out, args.chromium)
    print("\n".join(f"{args.out / name}" for name in SHOTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
