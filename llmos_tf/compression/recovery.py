"""Recover a run folder from a published version: weights read back out of ``model.tflite`` or the SavedModel.

Earlier releases published compressed versions whose weights lived only in
``model.tflite`` (``--tflite_only``): the stock ``tensorflow_model_server`` could
not serve them, and no float copy was kept. This module turns such a version
back into a run folder (``config.yaml``, ``vocab.txt``, ``labels.txt``,
``model.keras``, ``run.json``) so that ``export_model`` can publish it again as a
SavedModel with int8 weights (plus the same ``model.tflite``):

1. the run config comes from the model card's ``training_command`` (the YAML in
   ``configs/`` and its ``--set`` overrides);
2. the model is rebuilt from that config (same architecture, vocabulary, labels);
3. every weight is read from the TFLite flatbuffer by its TensorFlow name
   (``<layer path>/einsum/Einsum``, ``.../Tensordot/MatMul``, LSTM loop bodies, ...),
   dequantized with its own scales, and transposed back from TFLite's
   ``[out, in]`` fully-connected layout;
4. the rebuilt model must reproduce the TFLite model's probabilities on real
   inputs (tokenized by the version's own ``preprocess`` signature) before
   anything is written.

:func:`recover_float_run` does the same for a float SavedModel version of a run trained from
scratch: its vocabulary is learned again from the config's training data (the same seeded
split and settings give the same vocabulary) and the weights come from the SavedModel's
variables; the rebuilt model must answer exactly as the version's ``serving_default``.

Example::

    recover_run("saved_models/sst2_bert/3", "runs/recovered/sst2_bert_3")
    recover_float_run("saved_models/banking77_bilstm/1", "runs/recovered/banking77_bilstm_1")
"""
from __future__ import annotations

import json
import pathlib
import re
import shlex
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import RunError
from llmos_tf.task_kinds import task_kind

CHECK_TEXTS = (
    "a gripping , beautifully acted film", "the plot is thin and the jokes fall flat", "hello",
    "I still have not received my new card", "Anna Berg joined Northwind Bank in Oslo .",
    "how do I top up with apple pay ?", "an utterly forgettable , tedious mess", "EU rejects German call to boycott British lamb .",
)


@dataclass
class TFLiteTensor:
    name: str
    subgraph: int
    values: np.ndarray  # dequantized float32 (int32 tensors as they are)
    quantized: bool


def read_tflite_constants(path: str | pathlib.Path) -> list[TFLiteTensor]:
    """Every constant tensor of every subgraph (loop bodies included), dequantized to float32."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = flatbuffer_utils.read_model(str(path))
    types = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT8: np.int8, schema.TensorType.INT32: np.int32,
             schema.TensorType.FLOAT16: np.float16}
    found: list[TFLiteTensor] = []
    for index, subgraph in enumerate(model.subgraphs):
        for tensor in subgraph.tensors:
            data = model.buffers[tensor.buffer].data
            if data is None or tensor.type not in types or tensor.shape is None or len(tensor.shape) == 0:
                continue
            values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype=types[tensor.type]).reshape(list(tensor.shape))
            quant = tensor.quantization
            quantized = tensor.type == schema.TensorType.INT8 and quant is not None and quant.scale is not None
            if quantized:
                scale = np.asarray(quant.scale, np.float32)
                zero = np.asarray(quant.zeroPoint if quant.zeroPoint is not None else 0, np.float32)
                if scale.size > 1:
                    shape = [1] * values.ndim
                    shape[quant.quantizedDimension] = scale.size
                    scale, zero = scale.reshape(shape), (zero.reshape(shape) if zero.size > 1 else zero)
                values = (values.astype(np.float32) - zero) * scale
            elif values.dtype == np.float16:
                values = values.astype(np.float32)
            found.append(TFLiteTensor(tensor.name.decode("utf-8"), index, values, quantized))
    return found


# -- which TFLite tensor holds which Keras weight ------------------------------------
_KERNEL_ENDINGS = ("/einsum/Einsum", "/Tensordot/MatMul", "/MatMul")
_BIAS_ENDINGS = ("/BiasAdd/ReadVariableOp", "/BiasAdd", "/add/ReadVariableOp", "/add")


def _layer_path(weight_name: str) -> tuple[str, str]:
    """``'a/b/kernel:0'`` → ``('a/b', 'kernel')``."""
    name = weight_name.split(":")[0]
    path, _, leaf = name.rpartition("/")
    return path, leaf


def _pick(tensors: Sequence[TFLiteTensor], size: int, what: str) -> TFLiteTensor:
    fitting = [t for t in tensors if t.values.size == size]
    if len(fitting) != 1:
        raise RunError(f"model.tflite: {len(fitting)} tensors fit {what} ({size} values): "
                       f"{', '.join(t.name for t in tensors[:6]) or 'none'}")
    return fitting[0]


def _lstm_weight(tensors: Sequence[TFLiteTensor], path: str, leaf: str, size: int) -> TFLiteTensor:
    """LSTM weights live in the loop body subgraph that reads ``<lstm path>/Read_2/ReadVariableOp`` (the bias)."""
    lstm = path.rsplit("/", 1)[0]  # '<bidirectional>/<forward_lstm>' (the cell's parent)
    marker = f"/{lstm}/Read_2/ReadVariableOp"
    if leaf == "bias":
        return _pick([t for t in tensors if t.subgraph == 0 and t.name.endswith(marker)], size, f"{path}/bias")
    bodies = {t.subgraph for t in tensors if t.subgraph > 0 and marker in t.name}
    pattern = re.compile(r"while/MatMul_1\d*$" if leaf == "recurrent_kernel" else r"while/MatMul\d*$")
    return _pick([t for t in tensors if t.subgraph in bodies and pattern.search(t.name)], size, f"{path}/{leaf}")


def _find(tensors: Sequence[TFLiteTensor], weight) -> TFLiteTensor | None:
    path, leaf = _layer_path(weight.name)
    size = int(np.prod(weight.shape))
    if path.endswith(("lstm_cell", "gru_cell")):
        return _lstm_weight(tensors, path, leaf, size)
    inside = [t for t in tensors if f"/{path}/" in f"/{t.name}" and t.subgraph == 0]
    if leaf == "kernel":
        candidates = [t for t in inside if t.name.endswith(_KERNEL_ENDINGS)]
    elif leaf == "bias":
        candidates = [t for t in inside if t.name.endswith(_BIAS_ENDINGS)]
    elif leaf == "gamma":
        candidates = [t for t in inside if t.name.endswith(f"{path}/batchnorm/mul/ReadVariableOp")]
    elif leaf == "beta":
        candidates = [t for t in inside if t.name.endswith(f"{path}/batchnorm/ReadVariableOp")]
    elif leaf == "embeddings":
        candidates = [t for t in inside if t.name.endswith(f"{path}/embedding_lookup")]
    else:
        candidates = []
    candidates = [t for t in candidates if t.values.size == size]
    if not candidates:
        return None
    return _pick(candidates, size, weight.name)


def _keras_value(weight, tensor: TFLiteTensor) -> np.ndarray:
    shape = weight.shape.as_list()
    path, leaf = _layer_path(weight.name)
    values = tensor.values
    if leaf in ("kernel", "recurrent_kernel") and values.ndim == 2:
        # TFLite FULLY_CONNECTED stores [outputs, inputs]; Keras kernels are [inputs..., outputs...]
        return values.T.reshape(shape)
    return values.reshape(shape)


def load_tflite_weights(model: tf_keras.Model, tflite_path: str | pathlib.Path) -> list[str]:
    """Copy every weight ``model`` has a TFLite tensor for; returns the names of those it has none for."""
    tensors = read_tflite_constants(tflite_path)
    missing = []
    for weight in model.weights:
        tensor = _find(tensors, weight)
        if tensor is None:
            missing.append(weight.name)
            continue
        weight.assign(_keras_value(weight, tensor).astype(weight.dtype.as_numpy_dtype))
    return missing


# -- the run around the weights ------------------------------------------------------
def config_from_card(card: dict[str, Any], configs_root: pathlib.Path):
    """The run config a version was trained with: the card's ``training_command`` (``llmos train CONFIG`` or
    ``llmos distill ... --student CONFIG``) and its ``--set`` overrides (``output_dir`` dropped)."""
    from llmos_tf.config import load_config

    command = card.get("training_command") or ""
    words = shlex.split(command)
    config = None
    overrides = []
    for i, word in enumerate(words):
        if word == "--set" and i + 1 < len(words) and not words[i + 1].startswith("output_dir="):
            overrides.append(words[i + 1])
        if word.endswith((".yaml", ".yml")) and (words[i - 1] in ("train", "--student")):
            config = word
    if config is None:
        raise RunError(f"model card: cannot find the run's config in its training_command {command!r}")
    path = configs_root / config
    if not path.is_file():
        raise RunError(f"{path}: the config of training_command {command!r} is not there")
    return load_config(path, overrides)


def _build_model(cfg, vocabulary: list[str], labels: list[str], max_length: int) -> tf_keras.Model:
    from llmos_tf.models import registry

    model_cfg = registry.model_config(cfg.model)
    if task_kind(cfg.task).predicts == "word_tags":
        from llmos_tf.tasks.tagging import build_bert_tagger

        return build_bert_tagger(model_cfg, vocabulary, len(labels), max_length)
    arch = registry.get(cfg.architecture)
    return arch.build(model_cfg, registry.BuildContext(num_labels=len(labels), vocabulary=vocabulary, task=cfg.task, max_length=max_length))


def _check_against_tflite(model: tf_keras.Model, version_dir: pathlib.Path, texts: Sequence[str]) -> float:
    """Largest |Δp| between the rebuilt model and ``model.tflite`` on the version's own preprocessed texts."""
    from llmos_tf.compression.tflite import TFLiteRunner, make_interpreter

    loaded = tf.saved_model.load(str(version_dir))
    pre = loaded.signatures["preprocess"](text=tf.constant(list(texts)))
    runner = TFLiteRunner(make_interpreter(path=str(version_dir / "model.tflite")))
    inputs = {k: pre[k].numpy().astype(np.int32) for k in runner.input_names}
    expected = runner(inputs)
    got = model(inputs if len(inputs) > 1 else next(iter(inputs.values())), training=False).numpy()
    if got.shape != expected.shape:
        raise RunError(f"rebuilt model answers shape {got.shape}, model.tflite {expected.shape}")
    difference = np.abs(got - expected)
    if difference.ndim == 3 and "padding_mask" in inputs:  # a tagger: padded positions are never read
        difference = difference[inputs["padding_mask"].astype(bool)]
    return float(difference.max())


def _version_facts(version_dir: pathlib.Path, configs_root: str | pathlib.Path):
    """(model card, label names, run config) of a published version.

    A version published before ``data.label_names`` existed answers the raw label
    values; when the config now names every one of them, the recovered run takes the
    names (same ids, same order), so its next export answers ``negative``/``positive``.
    """
    card = json.loads((version_dir / "assets" / "llmos.json").read_text(encoding="utf-8"))
    labels = [line for line in (version_dir / "assets" / "labels.txt").read_text(encoding="utf-8").splitlines() if line]
    cfg = config_from_card(card, pathlib.Path(configs_root))
    names = getattr(cfg.data, "label_names", None) or {}
    if names and all(label in names for label in labels):
        labels = [names[label] for label in labels]
    return card, labels, cfg


def _write_run(run_dir: pathlib.Path, cfg, vocabulary: list[str], labels: list[str], model, card: dict[str, Any],
               facts: dict[str, Any], max_length: int) -> None:
    from llmos_tf.config import dump_config
    from llmos_tf.data.labels import LabelMap
    from llmos_tf.training import artifacts

    run_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_text_atomic(run_dir / artifacts.CONFIG_FILE, dump_config(cfg))
    artifacts.write_text_atomic(run_dir / artifacts.VOCAB_FILE, "\n".join(vocabulary) + "\n")
    LabelMap(labels).save(run_dir / artifacts.LABELS_FILE)
    info = {
        "task": cfg.task, "architecture": cfg.architecture, "metrics": card.get("metrics", {}), "data": card.get("data", {}),
        "parameters": card.get("parameters"), "command": card.get("training_command"), "recovered": facts,
    }
    if task_kind(cfg.task).predicts == "word_tags":  # a tagger's run.json records max_length (as TaggingTask.run_info)
        info["max_length"] = max_length
    artifacts.finish_run(run_dir, model, card.get("metrics", {}), info)


def recover_float_run(version_dir: str | pathlib.Path, run_dir: str | pathlib.Path, *, configs_root: str | pathlib.Path = ".",
                      texts: Sequence[str] = CHECK_TEXTS, tolerance: float = 1e-5) -> dict[str, Any]:
    """Write a run folder for a float SavedModel version of a classifier trained from scratch (see module docstring)."""
    from llmos_tf.data.labels import LabelMap
    from llmos_tf.data.prepare import prepare_classification_data
    from llmos_tf.models import registry
    from llmos_tf.tasks.classification import TrainedRun

    version_dir, run_dir = pathlib.Path(version_dir), pathlib.Path(run_dir)
    card, labels, cfg = _version_facts(version_dir, configs_root)
    model_cfg = registry.model_config(cfg.model)
    arch = registry.get(cfg.architecture)
    data = prepare_classification_data(cfg.data, cfg.seed)
    vocabulary = arch.vocabulary(model_cfg, data.train["text"].tolist(), cfg.text)
    max_length = int(card["encoder"]["max_length"])
    model = _build_model(cfg, vocabulary, labels, max_length)
    loaded = tf.saved_model.load(str(version_dir))
    saved = {v.name: v for v in loaded.model.variables}
    missing = [w.name for w in model.weights if w.name not in saved or saved[w.name].shape != w.shape]
    if missing:
        raise RunError(f"{version_dir}: the SavedModel has no variable for {', '.join(missing)}")
    for weight in model.weights:
        weight.assign(saved[weight.name])
    run = TrainedRun(run_dir, cfg, model, vocabulary, LabelMap(labels), {})
    expected = loaded.signatures["serving_default"](text=tf.constant(list(texts)))["probabilities"].numpy()
    drift = float(np.abs(run.predict_proba(list(texts)) - expected).max())
    if drift > tolerance:
        raise RunError(f"{version_dir}: the rebuilt model differs from the SavedModel by up to {drift:.2e} "
                       "(the vocabulary learned again is not the one the version was trained with)")
    facts = {"from_savedmodel": str(version_dir), "max_abs_probability_difference": drift}
    _write_run(run_dir, cfg, vocabulary, labels, model, card, facts, max_length)
    return facts


def recover_run(version_dir: str | pathlib.Path, run_dir: str | pathlib.Path, *, configs_root: str | pathlib.Path = ".",
                texts: Sequence[str] = CHECK_TEXTS, tolerance: float = 0.05) -> dict[str, Any]:
    """Write a run folder for a TFLite-only version; returns facts (max |Δp| vs the TFLite model, missing weights)."""
    from llmos_tf.models import registry

    version_dir, run_dir = pathlib.Path(version_dir), pathlib.Path(run_dir)
    card, labels, cfg = _version_facts(version_dir, configs_root)
    model_cfg = registry.model_config(cfg.model)
    arch = registry.get(cfg.architecture)
    vocabulary = arch.vocabulary(model_cfg, [], cfg.text)
    max_length = int(card.get("max_length") or card["encoder"]["max_length"])
    model = _build_model(cfg, vocabulary, labels, max_length)
    missing = load_tflite_weights(model, version_dir / "model.tflite")
    drift = _check_against_tflite(model, version_dir, texts)
    if drift > tolerance:
        raise RunError(f"{version_dir}: the rebuilt model differs from model.tflite by up to {drift:.3f} in probability "
                       f"(weights without a TFLite tensor: {', '.join(missing) or 'none'})")
    facts = {"from_tflite": str(version_dir / "model.tflite"), "max_abs_probability_difference": drift,
             "weights_not_in_tflite": missing}
    _write_run(run_dir, cfg, vocabulary, labels, model, card, facts, max_length)
    return facts
