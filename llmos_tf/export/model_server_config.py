"""Keep ``<base>/models.config`` (TF Serving's ModelServerConfig) in step with labelled versions.

TF Serving only knows version labels from ``--model_config_file``, so when an
export gives a version a label (``compressed``, ``distilled``, ...) the label is
written there: ``llmos serve --model_config_file saved_models/models.config``
then routes ``/v1/models/sst2/labels/compressed`` (REST) or
``version_label: "compressed"`` (gRPC) to it. A model that gets its first label
is listed with the ``all`` version policy, because TF Serving lets a label point
only at a loaded version.

Base paths are written relative to the file (``llmos serve`` resolves them);
``tensorflow_model_server`` wants absolute ones: see README, "Scaling out".

Example::

    set_version_label("saved_models", "sst2_bert", "compressed", 2)
"""
from __future__ import annotations

import pathlib

from google.protobuf import text_format

from llmos_tf.errors import RunError

CONFIG_FILE = "models.config"


def set_version_label(model_base_path: str | pathlib.Path, name: str, label: str, version: int) -> pathlib.Path:
    """Point ``label`` of model ``name`` at ``version``; create the file or the entry if needed."""
    from tensorflow_serving.config import model_server_config_pb2

    from llmos_tf.serving.model_config import check_label
    from llmos_tf.training.artifacts import write_text_atomic

    check_label(label)
    path = pathlib.Path(model_base_path) / CONFIG_FILE
    proto = model_server_config_pb2.ModelServerConfig()
    if path.is_file():
        try:
            text_format.Parse(path.read_text(encoding="utf-8"), proto)
        except text_format.ParseError as err:
            raise RunError(f"{path}: not a ModelServerConfig text proto ({err}); fix or remove it") from None
    entries = proto.model_config_list.config
    entry = next((e for e in entries if e.name == name), None)
    if entry is None:
        entry = entries.add(name=name, base_path=name, model_platform="tensorflow")
        entry.model_version_policy.all.SetInParent()
    elif entry.model_version_policy.WhichOneof("policy_choice") in (None, "latest"):
        entry.model_version_policy.all.SetInParent()
    entry.version_labels[label] = int(version)
    write_text_atomic(path, text_format.MessageToString(proto))
    return path
