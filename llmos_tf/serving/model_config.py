"""Which models to serve: TF Serving's ModelServerConfig, parsed into plain dataclasses.

``--model_config_file`` takes the same text proto as ``tensorflow_model_server``::

    model_config_list {
      config { name: "sst2" base_path: "/models/sst2" model_platform: "tensorflow"
               model_version_policy { latest { num_versions: 2 } }
               version_labels { key: "stable" value: 1 } }
    }

so one file drives both servers. Relative base paths are resolved against the
config file's folder, as a convenience TF Serving does not have.
"""
from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass, field
from typing import Iterable

from google.protobuf import text_format

from llmos_tf.errors import ConfigError

LABEL_RE = re.compile(r"^[a-zA-Z0-9_]+$")


@dataclass(frozen=True)
class VersionPolicy:
    """``latest`` N (TF Serving's default, N=1), ``all``, or ``specific`` versions."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, candidates: Iterable[int]) -> set[int]:
        ordered = sorted(set(candidates))
        if self.kind == "all":
            return set(ordered)
        if self.kind == "specific":
            return set(ordered) & set(self.versions)
        return set(ordered[-max(self.num_versions, 1):]) if ordered else set()


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: pathlib.Path
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict, hash=False)


def check_label(label: str) -> str:
    if not LABEL_RE.match(label or ""):
        raise ConfigError(f"version label {label!r} is invalid: use letters, digits and '_' only")
    return label


def from_proto(config, relative_to: pathlib.Path | None = None) -> list[ModelConfig]:
    """``ModelServerConfig`` proto -> list of :class:`ModelConfig`."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ConfigError("custom_model_config is not supported; use model_config_list")
    models = []
    seen = set()
    for entry in config.model_config_list.config:
        if not entry.name:
            raise ConfigError("model_config_list: every config needs a name")
        if entry.name in seen:
            raise ConfigError(f"model_config_list: model {entry.name!r} is listed twice")
        seen.add(entry.name)
        if not entry.base_path:
            raise ConfigError(f"model {entry.name!r}: base_path is required")
        if entry.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"model {entry.name!r}: model_platform {entry.model_platform!r} is not supported (only 'tensorflow')")
        base = pathlib.Path(entry.base_path)
        if not base.is_absolute() and relative_to is not None:
            base = relative_to / base
        policy_kind = entry.model_version_policy.WhichOneof("policy_choice") or "latest"
        if policy_kind == "latest":
            policy = VersionPolicy("latest", entry.model_version_policy.latest.num_versions or 1)
        elif policy_kind == "all":
            policy = VersionPolicy("all")
        else:
            versions = tuple(int(v) for v in entry.model_version_policy.specific.versions)
            if not versions:
                raise ConfigError(f"model {entry.name!r}: model_version_policy.specific needs at least one version")
            policy = VersionPolicy("specific", versions=versions)
        labels = {check_label(k): int(v) for k, v in entry.version_labels.items()}
        models.append(ModelConfig(entry.name, base, policy, labels))
    return models


def parse_text(text: str, relative_to: pathlib.Path | None = None, source: str = "model config") -> list[ModelConfig]:
    from tensorflow_serving.config import model_server_config_pb2

    proto = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as err:
        raise ConfigError(f"{source}: not a ModelServerConfig text proto: {err}") from None
    return from_proto(proto, relative_to)


def read_config_file(path: str | pathlib.Path) -> list[ModelConfig]:
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"--model_config_file: {path} does not exist")
    return parse_text(path.read_text(encoding="utf-8"), path.parent.resolve(), str(path))


def is_version_dir(path: pathlib.Path) -> bool:
    """TF Serving loads only all-digit folder names; ``.tmp-*``, ``tmp*`` and the like are ignored."""
    return path.is_dir() and path.name.isdigit()


def discover_models(root: pathlib.Path) -> list[ModelConfig]:
    """Every model folder under a base path of models (``saved_models/<name>/<version>``)."""
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith((".", "tmp")) and not child.name.isdigit():
            found.append(ModelConfig(child.name, child))
    return found


def single_model(name: str | None, base_path: pathlib.Path) -> list[ModelConfig] | None:
    """``--model_name`` + ``--model_base_path``, or a base path that is itself one model's folder."""
    if name:
        return [ModelConfig(name, base_path)]
    if base_path.is_dir() and any(is_version_dir(p) for p in base_path.iterdir()):
        return [ModelConfig(base_path.resolve().name, base_path)]
    return None
