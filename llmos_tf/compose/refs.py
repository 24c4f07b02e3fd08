"""What a ``--member`` or ``--model`` of the compose commands points at: one published SavedModel version.

A member is written the way a TF Serving client names a version: ``saved_models/sst2_bert@compressed``
(a version label from ``<base>/models.config``, the file ``llmos compress`` and TF Serving's
``--model_config_file`` share), ``saved_models/sst2_bert/3`` (a version folder) or ``saved_models/sst2_bert``
(its highest version, as TF Serving serves by default). Everything here reads files only -- no
TensorFlow -- so a wrong member is refused at once, before any model loads.

Example::

    ref = resolve_version("saved_models/sst2_bert@compressed")
    ref.version_dir, ref.labels, ref.metric      # (.../sst2_bert/3, ['negative', 'positive'], 0.900)
"""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Any

from llmos_tf.errors import RunError

EXPECTED = "a published version: saved_models/<name>@<label>, saved_models/<name>/<version> or saved_models/<name>"


@dataclass(frozen=True)
class VersionRef:
    """One published version, as named on the command line and as found on disk."""

    spec: str  # what the user wrote
    name: str  # the model folder's name
    version: int
    version_dir: pathlib.Path
    labels: list[str] | None  # assets/labels.txt (None: not a classifier)
    card: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def task(self) -> str | None:
        return self.card.get("task")

    @property
    def metric(self) -> float | None:
        """Validation accuracy from the model card (the member's own metric, listed in an ensemble's card)."""
        validation = (self.card.get("metrics") or {}).get("validation") or {}
        value = validation.get("accuracy")
        return float(value) if isinstance(value, (int, float)) else None

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "name": self.name, "version": self.version, "path": str(self.version_dir),
                "task": self.task, "metrics": self.card.get("metrics", {}), "compression": (self.card.get("compression") or {}).get("method")}


def _label_version(model_dir: pathlib.Path, label: str, flag: str, spec: str) -> int:
    """The version ``label`` points at in ``<base>/models.config`` (the base path is the model folder's parent)."""
    from llmos_tf.errors import ConfigError
    from llmos_tf.serving.model_config import read_config_file

    config_file = model_dir.parent / "models.config"
    if not config_file.is_file():
        raise RunError(f"{flag} {spec}: version label {label!r} needs {config_file} (version labels live there); "
                       f"name a version instead: {model_dir}/<version>")
    try:
        models = read_config_file(config_file)
    except ConfigError as err:
        raise RunError(f"{flag} {spec}: {err}") from None
    entry = next((m for m in models if m.name == model_dir.name or m.base_path.resolve() == model_dir.resolve()), None)
    if entry is None:
        raise RunError(f"{flag} {spec}: {config_file} lists no model {model_dir.name!r}; models: {', '.join(m.name for m in models) or 'none'}")
    if label not in entry.labels:
        raise RunError(f"{flag} {spec}: model {model_dir.name!r} has no version label {label!r} in {config_file}; "
                       f"labels: {', '.join(sorted(entry.labels)) or 'none'}")
    return entry.labels[label]


def read_labels(version_dir: pathlib.Path) -> list[str] | None:
    path = version_dir / "assets" / "labels.txt"
    if not path.is_file():
        return None
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_card(version_dir: pathlib.Path) -> dict[str, Any]:
    path = version_dir / "assets" / "llmos.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ValueError, OSError):
        return {}


def resolve_version(spec: str, flag: str = "--member") -> VersionRef:
    """``spec`` -> :class:`VersionRef`, or a :class:`RunError` saying what exists instead."""
    from llmos_tf.export.layout import versions
    from llmos_tf.serving.local import find_version

    text = str(spec)
    label = None
    if "@" in pathlib.Path(text).name:
        text, label = text.rsplit("@", 1)
        if not label:
            raise RunError(f"{flag} {spec}: empty version label after '@'")
    path = pathlib.Path(text)
    if not path.exists():
        raise RunError(f"{flag} {spec}: {path} not found; expected {EXPECTED}")
    if label is not None:
        if (path / "saved_model.pb").is_file():
            raise RunError(f"{flag} {spec}: {path} is a version folder; a label names a version of a model folder (saved_models/<name>@<label>)")
        version = _label_version(path, label, flag, spec)
        version_dir = path / str(version)
        if not (version_dir / "saved_model.pb").is_file():
            raise RunError(f"{flag} {spec}: label {label!r} points at version {version}, but {version_dir} holds no saved_model.pb; "
                           f"versions on disk: {versions(path) or 'none'}")
    else:
        found = find_version(path)
        if found is None:
            if (path / "run.json").is_file():
                raise RunError(f"{flag} {spec}: a run folder; compose takes published versions -- export it first "
                               f"(llmos export --run {spec} --model_base_path saved_models --name NAME)")
            raise RunError(f"{flag} {spec}: no saved_model.pb in {path} or in a numbered folder under it; expected {EXPECTED}")
        version_dir = found
    version = int(version_dir.name) if version_dir.name.isdigit() else 0
    name = version_dir.parent.name if version_dir.name.isdigit() else version_dir.name
    return VersionRef(str(spec), name, version, version_dir, read_labels(version_dir), read_card(version_dir))
