"""Fault suite, a full disk: a checkpoint that does not fit is one line naming the file and the
space left, no temporary file stays on the full disk, and the run is FAILED with that line."""

from __future__ import annotations

import subprocess

import mlflow
import pytest


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)]).returncode:
        pytest.skip("cannot mount a 2 MB tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)])


def test_a_checkpoint_on_a_full_disk_is_one_line_and_leaves_no_temporary_file(
    tmp_path, tiny_overrides, small_disk, command
):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # the default CNN at 64 px: a checkpoint of 1.4 MB, the second does not fit in 2 MB
    keep = ("paths.output_dir", "model.classifier.build")
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith(keep)]
    run_dir = small_disk / "run"
    args = [*overrides, "model.image_size=64", "trainer.max_epochs=3", f"hydra.run.dir={run_dir}"]
    out = command("taco-train", *args, env={"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 1, out.stderr[-3000:]
    lines = [x for x in out.stderr.splitlines() if not x.split(" ")[-1].endswith("tables...")]
    errors = [x for x in lines if "taco-train: error:" in x]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert (
        f"no space left writing {run_dir}/checkpoints/" in errors[0]
        and " free on its disk" in errors[0]
    )
    leftovers = [p.name for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("taco").experiment_id])
    assert run.info.status == "FAILED" and "no space left writing" in run.data.tags["error"]


def test_a_command_output_folder_on_a_full_disk_is_one_line_and_leaves_nothing(small_disk):
    """taco-explain's and taco-compare's folders: whole or not at all, the user's other files
    in the folder untouched."""
    from taco.errors import DiskFullError
    from taco.files import staged_folder

    final = small_disk / "explain"
    final.mkdir()
    (final / "mine.txt").write_text("the user's")
    with pytest.raises(DiskFullError, match=rf"no space left writing {final}"):
        with staged_folder(final) as staging:
            (staging / "first.txt").write_text("written")
            (staging / "big.bin").write_bytes(b"x" * 3_000_000)
    assert sorted(p.name for p in final.iterdir()) == ["mine.txt"]
    assert [p.name for p in small_disk.iterdir()] == ["explain"]  # no temporary folder left
    with staged_folder(final) as staging:
        (staging / "sub").mkdir()
        (staging / "sub" / "a.txt").write_text("whole")
    assert (final / "sub" / "a.txt").read_text() == "whole" and (final / "mine.txt").exists()


def test_predict_csv_on_a_full_disk_is_one_line_and_leaves_no_file(small_disk):
    from pathlib import Path

    from taco.cli.predict import write_csv
    from taco.errors import DiskFullError

    files = [Path(f"images/photo_{i:06d}.jpg") for i in range(100_000)]  # about 4 MB of CSV
    with pytest.raises(DiskFullError, match=rf"no space left writing {small_disk}/labels\.csv"):
        write_csv(small_disk / "labels.csv", files, {"labels": ["Bottle"] * len(files)})
    assert list(small_disk.iterdir()) == []
