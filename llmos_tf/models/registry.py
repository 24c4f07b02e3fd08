"""Registry of model architectures: name → (config schema, builder).

The ``model:`` section of a run config names an ``architecture``; its other
keys are checked against that architecture's dataclass, so ``--set
model.lstm_unitz=3`` fails with the valid keys listed. New architectures (BERT)
join by calling :func:`register`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from llmos_tf.errors import ConfigError


@dataclass
class BuildContext:
    """What a builder needs beyond its own hyperparameters."""

    num_labels: int
    vocabulary: list[str]
    task: str = "classification"


@dataclass(frozen=True)
class Architecture:
    name: str
    config_cls: type
    build: Callable[[Any, BuildContext], Any]  # (config, context) -> tf_keras.Model
    learns_vocabulary: bool  # True: vocabulary learnt from the training texts
    description: str = ""


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> None:
    _REGISTRY[arch.name] = arch


def names() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get(name: str) -> Architecture:
    _ensure_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"model.architecture: unknown architecture {name!r}; valid: {', '.join(names())}")
    return _REGISTRY[name]


def validate_model_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``model:`` mapping against its architecture; return it with defaults filled in."""
    from llmos_tf.config import _build  # the same checker as the rest of the config

    values = dict(values or {})
    arch = get(str(values.get("architecture", "bilstm")))
    values["architecture"] = arch.name
    cfg = _build(arch.config_cls, values, "model")
    return dataclasses.asdict(cfg)


def model_config(values: Mapping[str, Any]) -> Any:
    """The architecture's dataclass for a (validated) ``model:`` mapping."""
    arch = get(str(values.get("architecture", "bilstm")))
    return arch.config_cls(**dict(values))


def _ensure_builtin() -> None:
    if "bilstm" in _REGISTRY:
        return
    from llmos_tf.models.bilstm import BiLSTMConfig, build_bilstm_classifier

    register(
        Architecture(
            name="bilstm",
            config_cls=BiLSTMConfig,
            build=lambda cfg, ctx: build_bilstm_classifier(cfg, vocabulary_size=len(ctx.vocabulary), num_labels=ctx.num_labels),
            learns_vocabulary=True,
            description="masked embedding + bidirectional LSTM + max/mean pooling",
        )
    )
