"""README "Beyond one machine" shows the commands `make test-scale` runs (tests/scale/commands.py
and tools/engines.py): a user who copies them runs what was tested."""

from __future__ import annotations

from pathlib import Path

from tests.scale.commands import SHOWN

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BEYOND = README.split("## Beyond one machine", 1)[1].split("\n## ", 1)[0]

# how tools/engines.py starts each engine: the flags the README's recipes must carry
ENGINE_FLAGS = [
    "initdb -D",
    "-U taco --auth=trust",
    'pg_ctl -D /srv/mlflow-db -l /srv/mlflow-db/log -o "-h 127.0.0.1 -p 5432" -w start',
    "createdb -h 127.0.0.1 -p 5432 -U taco mlflow",
    "mlflow server --backend-store-uri postgresql://taco@127.0.0.1:5432/mlflow",
    "--artifacts-destination",
    "export RAY_AUTH_MODE=token",
    "export RAY_AUTH_TOKEN=",
    "ray start --head --node-ip-address=127.0.0.1 --port=6379 --num-cpus=2",
    "--include-dashboard=false",
    "ray start --address=127.0.0.1:6379 --node-ip-address=127.0.0.1 --num-cpus=1",
]


def test_the_readme_shows_the_commands_the_scale_tests_run():
    missing = [f"{what}: {command}" for what, command in SHOWN.items() if command not in BEYOND]
    missing += [flag for flag in ENGINE_FLAGS if flag not in BEYOND]
    assert not missing, missing


def test_the_engines_start_as_the_readme_says():
    import inspect

    from tools import engines

    source = inspect.getsource(engines)
    for flag in ('"--auth=trust"', '"--include-dashboard=false"', '"--node-ip-address=127.0.0.1"'):
        assert flag in source
    command = engines.mlflow_server_command("postgresql://taco@h:1/mlflow", Path("/a"), 5000)
    assert " ".join(command[1:]) in BEYOND.replace("\\\n  ", "").replace(
        "postgresql://taco@127.0.0.1:5432/mlflow", "postgresql://taco@h:1/mlflow"
    ).replace("/srv/mlartifacts --host 127.0.0.1 --port 5000", "/a --host 127.0.0.1 --port 5000")
