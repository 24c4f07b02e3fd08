"""The run folder: what a finished training run leaves behind, and how to load it.

Layout of ``runs/<name>/``::

    config.yaml        resolved config (re-running it reproduces the run)
    vocab.txt          tokenizer vocabulary (learnt, or the checkpoint's)
    labels.txt         label names, id = line index
    model.keras        the best model (tf_keras format)
    run.json           written last: metrics, fingerprint, timings, command
    checkpoints/       best weights while training
    backup/            BackupAndRestore state (removed when the run finishes)
    train/ validation/ TensorBoard event files (+ hparams at the top level)

``run.json`` is the completion marker: a folder without it is an unfinished
run that ``llmos train`` resumes.
"""
from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
VOCAB_FILE = "vocab.txt"
LABELS_FILE = "labels.txt"
MODEL_FILE = "model.keras"
CHECKPOINT_DIR = "checkpoints"
BACKUP_DIR = "backup"


def write_text_atomic(path: str | pathlib.Path, text: str) -> None:
    """Write a file so readers see the old content or the new one, never half of it."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | pathlib.Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def is_finished(run_dir: str | pathlib.Path) -> bool:
    return (pathlib.Path(run_dir) / RUN_FILE).is_file()


def read_run_info(run_dir: str | pathlib.Path) -> dict[str, Any]:
    from llmos_tf.errors import RunError

    run_dir = pathlib.Path(run_dir)
    path = run_dir / RUN_FILE
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: run folder not found")
    if not path.is_file():
        raise RunError(f"{run_dir}: not a finished run (no {RUN_FILE}); train it with `llmos train` first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: unreadable run file ({err})") from None


def finish_run(run_dir: pathlib.Path, model, metrics: dict[str, Any], info: dict[str, Any]) -> None:
    """Write the model, metrics and finally ``run.json`` (the completion marker); drop the backup."""
    import shutil

    model_tmp = run_dir / (".tmp-" + MODEL_FILE)  # keeps the .keras suffix, which picks the format
    model.save(model_tmp)
    model_tmp.replace(run_dir / MODEL_FILE)
    write_json_atomic(run_dir / "metrics.json", metrics)
    write_json_atomic(run_dir / RUN_FILE, info)
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)
