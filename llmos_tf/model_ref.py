"""What ``--model``, ``--run`` and ``--teacher`` point at: a run folder or an exported version.

Classified from the files alone, without TensorFlow, so a wrong path answers at
once. Every command that takes a model (``llmos evaluate``, ``predict``,
``export``, ``compress``, ``distill``) resolves it here. It sits below the
command modules: ``llmos_tf.cli`` imports the ``export`` and ``compression``
command modules to build its parser, so those cannot import it back.

Example::

    ref = resolve_model("saved_models/sst2")   # a model folder: its highest version
    ref.kind, ref.path, ref.task               # ("savedmodel", .../sst2/3, "classification")
"""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelRef:
    """A ``--model`` path, classified without TensorFlow: a run folder or an exported version."""

    kind: str  # "run" | "savedmodel"
    path: pathlib.Path
    task: str | None  # classification | ner | multitask (from run.json or the model card); None = unknown

    @property
    def is_savedmodel(self) -> bool:
        return self.kind == "savedmodel"


def resolve_model(value: str, *, for_server: bool = False, flag: str = "--model") -> ModelRef:
    """What ``--model VALUE`` names, or a :class:`RunError` that says what to pass instead.

    A run folder (``runs/<name>``, with ``run.json``) or an exported SavedModel: a version
    folder (``saved_models/<name>/<version>``) or a model folder, whose highest version is
    used, as TF Serving does. ``for_server``: a bare name may be meant for ``--server``;
    ``flag`` is the flag the errors name (``--run``, ``--teacher``).
    """
    from llmos_tf.errors import RunError
    from llmos_tf.serving.local import find_version
    from llmos_tf.training import artifacts

    path = pathlib.Path(value)
    expected = "a run folder (runs/<name>, from llmos train) or an exported version (saved_models/<name>/<version>)"
    if not path.exists():
        server = f"; to ask a running server for model {value!r}, add --server HOST:PORT" if for_server and "/" not in value else ""
        raise RunError(f"{flag} {value}: not found; expected {expected}{server}")
    if path.is_file():
        run_dir = path.parent
        if path.name == "saved_model.pb":
            return resolve_model(str(run_dir), flag=flag)
        if (run_dir / artifacts.RUN_FILE).is_file():
            raise RunError(f"{flag} {value}: that is a file inside the run {run_dir}; pass the run folder: {flag} {run_dir}")
        raise RunError(f"{flag} {value}: is a file; expected {expected}")
    if (path / artifacts.RUN_FILE).is_file():
        info = artifacts.read_run_info(path)
        return ModelRef("run", path, str(info.get("task", "classification")))
    version = find_version(path)
    if version is not None:
        card = version / "assets" / "llmos.json"
        try:
            task = json.loads(card.read_text(encoding="utf-8")).get("task") if card.is_file() else None
        except (ValueError, OSError):
            task = None
        return ModelRef("savedmodel", version, task)
    if (path / artifacts.CONFIG_FILE).is_file():
        artifacts.read_run_info(path)  # "not a finished run (no run.json); train it ..."
    raise RunError(f"{flag} {value}: neither a run folder (no {artifacts.RUN_FILE}) nor an exported version (no saved_model.pb); "
                   f"expected {expected}")
