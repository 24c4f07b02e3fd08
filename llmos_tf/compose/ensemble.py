"""``llmos ensemble``: several published classifiers served as one SavedModel version.

Every member keeps its own tokenizer and weights (an int8 MiniLM and a fused BiLSTM side by side);
the ensemble's ``serving_default`` calls each member's ``serving_default`` inside one ``tf.function``
and combines the probabilities, in the graph:

* ``weighted_average``: ``sum_i w_i * p_i`` with the weights normalised to sum to 1;
* ``stacking``: a logistic regression on the members' concatenated probabilities, fitted (scikit-learn)
  on a validation file only -- never on anything a member was trained on.

The version obeys the classifier contract (``text`` -> ``probabilities``, ``label``, ``class_id``), so
clients, ``llmos serve`` and the stock ``tensorflow_model_server`` cannot tell it from a single model.

Example::

    build_ensemble(["saved_models/sst2_bert@compressed", "saved_models/sst2_bilstm_distilled/1"],
                   "saved_models", "sst2_ensemble", weights=[2, 1])
"""
from __future__ import annotations

import pathlib
from typing import Any, Sequence

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.compose.common import batched, command_line, load_version, publish, target
from llmos_tf.compose.plan import plan_ensemble
from llmos_tf.errors import DataError, RunError
from llmos_tf.export.base import TEXT_SPEC, WARMUP_TEXTS

class EnsembleModule(tf.Module):
    """Members' ``serving_default`` + a combiner in one graph; ``serving_default`` follows the classifier contract."""

    def __init__(self, members: Sequence[Any], labels: Sequence[str], orders: Sequence[Sequence[int]], *,
                 weights: Sequence[float] | None = None, kernel: np.ndarray | None = None, bias: np.ndarray | None = None):
        super().__init__(name="llmos_ensemble")
        self.members = list(members)
        self.label_names = tf.constant(list(labels))
        self.orders = [tf.constant(list(o), tf.int32) for o in orders]
        self.weights = tf.constant(list(weights), tf.float32) if weights is not None else None
        self.kernel = tf.Variable(np.asarray(kernel, np.float32), trainable=False, name="stacking_kernel") if kernel is not None else None
        self.bias = tf.Variable(np.asarray(bias, np.float32), trainable=False, name="stacking_bias") if bias is not None else None
        self.serve = tf.function(self._serve, input_signature=[TEXT_SPEC])
        self.member_probabilities = tf.function(self._member_probabilities, input_signature=[TEXT_SPEC])

    def _member_probabilities(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """``[B, members, labels]``: each member's served probabilities in the ensemble's label order."""
        columns = [tf.gather(tf.cast(m.signatures["serving_default"](text=text)["probabilities"], tf.float32), order, axis=1)
                   for m, order in zip(self.members, self.orders)]
        return {"probabilities": tf.stack(columns, axis=1)}

    def _serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        stacked = self._member_probabilities(text)["probabilities"]
        if self.kernel is not None:
            features = tf.reshape(stacked, [tf.shape(stacked)[0], -1])
            probabilities = tf.nn.softmax(tf.matmul(features, self.kernel) + self.bias, axis=-1)
        else:
            probabilities = tf.einsum("bml,m->bl", stacked, self.weights)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "label": tf.gather(self.label_names, class_id), "class_id": class_id}

    def signatures(self) -> dict:
        return {"serving_default": self.serve, "member_probabilities": self.member_probabilities}


def fit_stacking(features: np.ndarray, y: np.ndarray, num_labels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on ``features`` -> ``(kernel [F, L], bias [L])`` for ``softmax(x @ kernel + bias)``.

    Binary problems: scikit-learn's one logit becomes ``[0, x.w + b]``, whose softmax is its sigmoid."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=2000, random_state=seed).fit(features, y)
    if list(model.classes_) != list(range(num_labels)):
        raise DataError(f"stacking: the validation labels cover classes {list(model.classes_)}, expected 0..{num_labels - 1}")
    if num_labels == 2:
        kernel = np.stack([np.zeros(features.shape[1]), model.coef_[0]], axis=1)
        bias = np.array([0.0, model.intercept_[0]])
    else:
        kernel, bias = model.coef_.T, model.intercept_
    return kernel.astype(np.float32), bias.astype(np.float32)


def _scores(probabilities: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    predicted = probabilities.argmax(axis=1)
    return {"examples": int(len(y)), "accuracy": float((predicted == y).mean()), "macro_f1": float(f1_score(y, predicted, average="macro"))}


def build_ensemble(members: Sequence[str], model_base_path: str | pathlib.Path, name: str, *, weights: Sequence[float] | None = None,
                   fit: str = "weighted_average", validation: str | None = None, text_column: str | None = None,
                   label_column: str | None = None, version: int | None = None, force: bool = False, command: str | None = None) -> pathlib.Path:
    """Write the ensemble as ``<model_base_path>/<name>/<version>``; returns the version folder."""
    plan = plan_ensemble(members, weights=weights, fit=fit, validation=validation, text_column=text_column, label_column=label_column)
    model_dir, version, final_dir = target(model_base_path, name, version, force)
    loaded = [load_version(ref) for ref in plan.members]
    for ref, member in zip(plan.members, loaded):
        outputs = member.signatures["serving_default"].structured_outputs
        if "probabilities" not in outputs or outputs["probabilities"].shape[-1] != len(plan.labels):
            raise RunError(f"--member {ref.spec}: serving_default must output probabilities [None, {len(plan.labels)}]; outputs: {sorted(outputs)}")
    module = EnsembleModule(loaded, plan.labels, plan.orders, weights=plan.weights,
                            kernel=np.zeros([len(loaded) * len(plan.labels), len(plan.labels)]) if fit == "stacking" else None,
                            bias=np.zeros([len(plan.labels)]) if fit == "stacking" else None)
    combiner: dict[str, Any] = {"method": fit}
    metrics: dict[str, Any] = {}
    if plan.validation is not None:
        y = np.array([plan.labels.index(label) for label in plan.validation["label"]])
        per_member = batched(module.member_probabilities, list(plan.validation["text"]), "probabilities")  # [N, M, L]
        member_scores = [_scores(per_member[:, i], y) for i in range(len(loaded))]
        if fit == "stacking":
            kernel, bias = fit_stacking(per_member.reshape(len(y), -1), y, len(plan.labels))
            module.kernel.assign(kernel)
            module.bias.assign(bias)
            combiner.update(features="members' probabilities, concatenated in --member order", model="sklearn LogisticRegression (multinomial, L2, C=1)",
                            kernel=kernel.tolist(), bias=bias.tolist())
        from llmos_tf.data.fingerprint import file_sha256

        combiner.update(fit_on=validation if fit == "stacking" else None, validation_fingerprint=file_sha256(validation))
        ensemble = batched(module.serve, list(plan.validation["text"]), "probabilities")
        key = "validation_fit" if fit == "stacking" else "validation"  # stacking scored on its own fit data: in-sample
        metrics[key] = {**_scores(ensemble, y), "file": validation}
        metrics["members_on_validation"] = member_scores
    if plan.weights is not None:
        combiner["weights"] = plan.weights
    texts = tf.constant(list(WARMUP_TEXTS))
    expected = module.serve(texts)["probabilities"].numpy()

    def verify(saved: pathlib.Path) -> None:
        got = tf.saved_model.load(str(saved)).signatures["serving_default"](text=texts)["probabilities"].numpy()
        if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
            raise RunError(f"ensemble check failed: the reloaded SavedModel answers differently (max diff {np.abs(got - expected).max():.2e})")

    card = {
        "name": name, "version": version, "task": "classification", "kind": "ensemble",
        "signature": "serving_default: text -> probabilities, label, class_id; member_probabilities: text -> probabilities [None, members, labels]",
        "labels": plan.labels,
        **({"label_names": plan.members[0].card["label_names"]} if plan.members[0].card.get("label_names") else {}),
        "members": [{**ref.describe(), "weight": plan.weights[i] if plan.weights else None} for i, ref in enumerate(plan.members)],
        "combiner": combiner, "metrics": metrics,
        "encoder": {"architecture": "ensemble"},
        "export_command": command or command_line(),
    }
    return publish(module, module.signatures(), model_dir, final_dir, force=force, card=card, labels=plan.labels, verify=verify,
                   warmup=("serving_default", {"text": np.array([t.encode() for t in WARMUP_TEXTS], dtype=object)}))
