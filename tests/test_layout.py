"""The rooms of `taco` import downward only (pyproject.toml's import-linter contract, also run by
`make lint`), and every module of the package is in one of its layers."""

from __future__ import annotations

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


# taco's own bottom rooms (pyproject.toml's last two layers) and `taco.process`: they import
# nothing above them, so a module above imports them at its top and no cycle can follow
BOTTOM = {"taco", "taco.process"}


def test_taco_bottom_rooms_are_imported_at_the_top():
    """The import rule (README, "The code"): only a heavy library waits for the function that
    needs it; taco's own bottom rooms are light and are never imported inside a function."""
    import ast

    bottom = BOTTOM | {m.strip() for layer in _layers()[-2:] for m in layer.split(":")}
    local = []
    for path in sorted((ROOT / "taco").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module in bottom:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                local += [
                    f"{path.relative_to(ROOT)}:{s.lineno} {s.module}"
                    for s in ast.walk(node)
                    if isinstance(s, ast.ImportFrom) and s.module in bottom
                ]
    assert not local, f"taco's bottom rooms imported inside functions: {local}"
