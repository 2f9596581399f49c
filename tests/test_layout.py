"""The rooms of `taco` import downward only (pyproject.toml's import-linter contract, also run by
`make lint`), and every module of the package is in one of its layers."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return contract["layers"]


def test_imports_point_one_way(monkeypatch: pytest.MonkeyPatch):
    # the use case, not `importlinter.cli`: the CLI's logging setup disables every logger of
    # the process that it does not name (pytest's caplog then sees nothing of taco's)
    from importlinter.application.use_cases import lint_imports
    from importlinter.configuration import configure

    configure()
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename="pyproject.toml", cache_dir=None, no_logo=True)


def test_every_room_is_in_a_layer():
    named = {m.strip() for layer in _layers() for m in layer.replace(":", "|").split("|")}
    package = ROOT / "taco"
    rooms = {f"taco.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    rooms |= {f"taco.{p.name}" for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert rooms == named, f"not in a layer: {sorted(rooms - named)}; gone: {sorted(named - rooms)}"


def _lines_outside(module: str, *needles: str) -> list[str]:
    """`path:line` of every line of taco outside `module` that holds one of `needles`."""
    return [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "taco").rglob("*.py"))
        if path.name != module
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(needle in line for needle in needles)
    ]


def test_one_table_writer_draws_every_markdown_rule():
    """Every Markdown table goes through `taco.tables.markdown`: no other module draws a rule."""
    drawn = _lines_outside("tables.py", "|---", "---:|")
    assert not drawn, f"Markdown rules drawn outside taco/tables.py: {drawn}"


def test_signal_handlers_are_set_in_one_module():
    """taco/signals.py installs, holds and restores every handler (Lightning's signal connector)."""
    setting = _lines_outside("signals.py", "signal.signal(", "signal.getsignal(")
    assert not setting, f"signal handlers set outside taco/signals.py: {setting}"


# The import rule (README, "Layout"). Kept light: the modules `taco-train` imports before Hydra
# answers `--help` or `--cfg job` (the command, Hydra's plugins from taco, what they import at
# their top). They load none of LIBRARIES_KEPT_OUT and import every other taco module inside
# the function that needs it. Every other module imports at its top, but for a heavy library
# and the modules that load one when imported (HEAVY_AT_IMPORT), which wait for the function.
KEPT_LIGHT = {
    "taco", "taco.cli", "taco.cli.train", "taco.config", "taco.errors", "taco.schema",
    "taco.signals", "taco.sweeps", "taco.sweeps.hydra_core", "taco.sweeps.joblib_launcher",
    "taco.sweeps.optuna_study", "taco.sweeps.optuna_sweeper", "taco.sweeps.parent",
    "taco.sweeps.search_space", "taco.sweeps.slurm_launcher", "taco.sweeps.ray_launcher",
    "taco.sweeps.plan", "taco.sweeps.sweep_dir",
    "taco.tracking", "taco.tracking.lineage", "taco.tracking.provenance", "taco.tracking.tags",
}  # fmt: skip
HEAVY_AT_IMPORT = {
    "taco.data.pipeline", "taco.models.backbones", "taco.models.keras_bridge",
    "taco.models.losses", "taco.training.contract", "taco.tracking.pyfunc_entry",
}  # fmt: skip
LIBRARIES_KEPT_OUT = (
    "numpy", "PIL", "tensorflow", "keras", "jax", "mlflow", "sklearn", "matplotlib", "scipy",
    "onnx", "onnxruntime", "optuna", "pandas", "albumentations", "cv2", "pycocotools",
)  # fmt: skip
PLATFORM_ONLY = {"fcntl", "msvcrt", "resource"}  # imported where they exist, in a try


def test_taco_train_starts_with_the_modules_kept_light_only():
    code = (
        "import sys, json, taco.cli.train, taco.sweeps.parent, hydra_plugins.taco_sweeper\n"
        "from hydra.core.plugins import Plugins\n"
        "Plugins.instance()  # Hydra's scan: every plugin module, as for each command\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {!r})))\n"
    ).format(("taco", *LIBRARIES_KEPT_OUT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    heavy = sorted({m.split(".")[0] for m in loaded if not m.startswith("taco")})
    assert not heavy, f"loaded before --help answers: {heavy[:10]}"
    assert loaded <= KEPT_LIGHT, f"not on the kept-light list: {sorted(loaded - KEPT_LIGHT)}"


def _local_imports() -> list[tuple[str, str, str]]:
    """(module, imported module, `path:line`) of every import inside a function of taco."""
    found = []
    for path in sorted((ROOT / "taco").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for s in ast.walk(node):
                names = (
                    [a.name for a in s.names] if isinstance(s, ast.Import)
                    else [s.module] if isinstance(s, ast.ImportFrom) and s.level == 0
                    else []
                )  # fmt: skip
                found += [(module, n, f"{path.relative_to(ROOT)}:{s.lineno}") for n in names]
    return sorted(set(found))


def test_a_module_imports_at_its_top_unless_the_rule_says_wait():
    """Inside a function: a heavy library, a module that loads one (HEAVY_AT_IMPORT), or, in a
    module kept light, what is not kept light. Never the standard library, never taco's own
    light modules."""
    wrong = []
    for module, name, where in _local_imports():
        root = name.split(".")[0]
        target = next((m for m in (name, name.rsplit(".", 1)[0]) if m.startswith("taco")), None)
        if target is not None:
            waits = target in HEAVY_AT_IMPORT or (module in KEPT_LIGHT and target not in KEPT_LIGHT)
        elif root in sys.stdlib_module_names:
            waits = root in PLATFORM_ONLY
        elif root in ("numpy", "PIL"):
            waits = module in KEPT_LIGHT
        else:
            waits = root not in ("hydra", "omegaconf", "yaml")  # loaded by every command
        if not waits:
            wrong.append(f"{where} {name}")
    assert not wrong, f"imported inside a function, against the import rule: {wrong}"
