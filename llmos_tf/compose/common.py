"""What every composed servable shares: loading a member version, batched calls, and publishing a version.

A composed servable (ensemble, encoder, search index) is an ordinary ``tf.Module`` whose
``tf.function`` signatures call other SavedModels' signatures: members are loaded with
``tf.saved_model.load`` and kept as attributes, so ``tf.saved_model.save`` writes their
variables, assets (vocabularies) and functions into the one new graph -- TF Serving has no
serving-side composition, and its maintainers advise exactly this. The result loads with
nothing but ``import tensorflow, tensorflow_text``.
"""
from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.compose.refs import VersionRef
from llmos_tf.errors import RunError
from llmos_tf.export.layout import staged_version, version_target


def load_version(ref: VersionRef, flag: str = "--member", signature: str | None = "serving_default"):
    """``tf.saved_model.load`` of a member, or a :class:`RunError` with the reason it cannot be used."""
    import tensorflow_text  # noqa: F401  (the members' tokenizers are tensorflow-text ops)

    try:
        loaded = tf.saved_model.load(str(ref.version_dir))
    except Exception as err:  # a corrupt or partial folder: say why, in one line
        reason = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise RunError(f"{flag} {ref.spec}: cannot load {ref.version_dir}: {type(err).__name__}: {reason}") from None
    if signature is not None and signature not in loaded.signatures:
        raise RunError(f"{flag} {ref.spec}: {ref.version_dir} has no {signature!r} signature; signatures: {', '.join(sorted(loaded.signatures)) or 'none'}")
    return loaded


def batched(function: Callable[..., Mapping[str, tf.Tensor]], texts: Sequence[str], output: str, *, input_name: str = "text",
            batch_size: int = 64) -> np.ndarray:
    """``function(text=batch)[output]`` over ``texts``, shortest first (less padding), rows back in input order."""
    texts = [str(t) for t in texts]
    order = np.argsort([len(t) for t in texts], kind="stable")
    parts: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        rows = [texts[i] for i in order[start:start + batch_size]]
        parts.append(function(**{input_name: tf.constant(rows)})[output].numpy())
    if not parts:
        raise RunError("no texts to run")
    stacked = np.concatenate(parts)
    out = np.empty_like(stacked)
    out[order] = stacked
    return out


def target(model_base_path: str | pathlib.Path, name: str, version: int | None, force: bool) -> tuple[pathlib.Path, int, pathlib.Path]:
    """Check ``--name``/``--version`` before any work (the export's rule: next free version, no silent overwrite)."""
    return version_target(model_base_path, name, version, force=force)


def write_warmup(version_dir: pathlib.Path, model_name: str, signature: str, inputs: Mapping[str, np.ndarray]) -> pathlib.Path:
    """TF Serving's warm-up file (``assets.extra/tf_serving_warmup_requests``) with one request of ``inputs``."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        writer.write(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
    return path


def publish(module: tf.Module, signatures: dict, model_dir: pathlib.Path, final_dir: pathlib.Path, *, force: bool,
            card: dict[str, Any], labels: Sequence[str] | None, verify: Callable[[pathlib.Path], None],
            warmup: tuple[str, Mapping[str, np.ndarray]] | None = None) -> pathlib.Path:
    """Save ``module`` into a hidden folder, reload and ``verify`` it, add labels, card and warm-up, rename into place.

    A failure anywhere leaves nothing behind, so a server polling the base path never sees half a version.
    """
    with staged_version(model_dir, final_dir, force=force) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        verify(tmp)
        assets = tmp / "assets"
        assets.mkdir(exist_ok=True)
        if labels is not None:
            (assets / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
        card = {**card, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (assets / "llmos.json").write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
        if warmup is not None:
            write_warmup(tmp, card.get("name", model_dir.name), *warmup)
    return final_dir


def command_line() -> str:
    import shlex
    import sys

    return "llmos " + shlex.join(sys.argv[1:])
