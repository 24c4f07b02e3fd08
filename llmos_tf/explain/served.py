"""``llmos explain --server``: explanations of a served model, computed by the server where it can.

A version exported by llmos carries an ``explain`` signature (``explain_<head>`` per head of a
multitask version): integrated gradients in plain TF ops, run by ``llmos serve`` or the stock
``tensorflow_model_server``. The client asks the model's metadata which signatures it has and:

* calls ``explain`` (or ``explain_<head>``) when it is there: the same numbers as
  ``llmos explain --model VERSION`` on the folder, for classifiers and NER taggers alike;
* otherwise falls back to drop-one-word occlusion (:mod:`~llmos_tf.explain.occlusion`), which needs
  only a classifier's ``probabilities`` (old exports, someone else's model);
* refuses, saying why, a served tagger without ``explain`` (its ``serving_default`` gives tags, no
  probabilities to occlude).

Example::

    result = explain_served("127.0.0.1:8500", "sst2", ["not bad at all"])
    result.kind, result.method          # ("classifier", "integrated_gradients")
    result.frame                        # the DataFrame `llmos explain --json` prints
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import grpc

from llmos_tf.serving.errors import ServingError

NOT_HEADS = ("preprocess", "postprocess", "encode", "search", "member_probabilities")


@dataclass(frozen=True)
class ServedExplanation:
    """What :func:`explain_served` found: ``kind`` "classifier" | "tagger", how (``method``), the frame, which signature."""

    kind: str
    method: str
    frame: Any  # Explanations (classifier) or EntityExplanations (tagger)
    signature: str


def _heads(signatures: dict[str, Any]) -> list[str]:
    from llmos_tf.export.base import EXPLAIN

    return sorted(name for name in signatures if name != "serving_default" and name not in NOT_HEADS and not name.startswith(EXPLAIN))


def explain_served(target: str, model: str, texts: Sequence[str], *, head: str | None = None, version: int | None = None,
                   version_label: str | None = None, timeout: float = 60.0) -> ServedExplanation:
    """Explain ``texts`` with the model served at ``target`` (``HOST:PORT``, gRPC; see the module docstring)."""
    from llmos_tf.explain.entity_frame import entity_explanations
    from llmos_tf.explain.explanations import frame_from_explain_outputs
    from llmos_tf.explain.occlusion import occlusion_explain
    from llmos_tf.export.base import EXPLAIN, explain_signature
    from llmos_tf.serving.client import Client

    texts = [str(t) for t in texts]
    with Client(target, timeout=timeout) as client:
        signatures = client.metadata(model, version=version, label=version_label)["signature_def"]
        answers = head or "serving_default"
        if answers not in signatures:
            heads = _heads(signatures)
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"{target}: model {model!r} has no head {head!r}; "
                               f"its heads (signatures): {', '.join(heads) or 'none (a single-task model: drop --head)'}")
        explain = explain_signature(head) if head else EXPLAIN
        if explain in signatures:
            out = client.predict(model, texts, version=version, label=version_label, signature=explain)
            if "entity_count" in out:
                return ServedExplanation("tagger", "integrated_gradients", entity_explanations(texts, out), explain)
            return ServedExplanation("classifier", "integrated_gradients", frame_from_explain_outputs(texts, out), explain)
    outputs = signatures[answers].get("outputs", {})
    if "probabilities" not in outputs:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"{target}: model {model!r} ({answers}) answers {', '.join(sorted(outputs)) or 'nothing'} and has no "
                           f"{explain!r} signature, so neither integrated gradients nor occlusion (which needs class probabilities) "
                           "can explain it; re-export it with llmos export (every export has 'explain'), or pass its run folder")
    frame = occlusion_explain(target, model, texts, version=version, version_label=version_label, timeout=timeout, signature=answers)
    return ServedExplanation("classifier", "occlusion", frame, answers)
