"""Drop-one-word explanations of any served classifier, through TF Serving's official gRPC stub.

Some models are only reachable through a server (``tensorflow_model_server`` or ``llmos serve``,
an old export without an ``explain`` signature, someone else's model). Occlusion needs nothing
from them but ``serving_default``: the text and each of its variants with one word removed go
in ONE Predict request; a word's score is how much the predicted class's probability drops
without it (positive: the word supported the answer).

Example::

    frame = occlusion_explain("127.0.0.1:8500", "sst2", ["a wonderful film"])
    frame.loc[0, "words"], frame.loc[0, "attributions"]
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from llmos_tf.explain.explanations import Explanations, _frame


def drop_one_word_variants(text: str) -> tuple[list[str], list[str]]:
    """The text's whitespace words and, for each, the text without that word."""
    words = text.split()
    return words, [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]


def occlusion_explain(target: str, model: str, texts: Sequence[str], *, version: int | None = None, version_label: str | None = None,
                      timeout: float = 30.0, signature: str = "serving_default") -> Explanations:
    """Occlusion scores of ``texts`` from the served ``model`` at ``target`` (``HOST:PORT``, gRPC); ``signature``: which
    classifier signature answers (a multitask version's head)."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from llmos_tf._tf import tf
    from llmos_tf.serving.errors import ServingError

    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    rows = []
    try:
        for text in texts:
            words, variants = drop_one_word_variants(str(text))
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.model_spec.signature_name = signature
            if version is not None:
                request.model_spec.version.value = int(version)
            elif version_label:
                request.model_spec.version_label = version_label
            request.inputs["text"].CopyFrom(tf.make_tensor_proto([str(text)] + variants, dtype=tf.string))
            try:
                response = stub.Predict(request, timeout=timeout)
            except grpc.RpcError as err:
                raise ServingError(err.code(), f"{target}: {err.details()}") from None
            if "probabilities" not in response.outputs:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"{target}: model {model!r} answers no 'probabilities' "
                                   "(occlusion explains sentence classifiers)")
            probs = tf.make_ndarray(response.outputs["probabilities"])
            labels = [x.decode() for x in tf.make_ndarray(response.outputs["label"]).tolist()]
            predicted = int(np.argmax(probs[0]))
            scores = (probs[0, predicted] - probs[1:, predicted]).astype(float).tolist()
            rows.append({"text": str(text), "label": labels[0], "probability": float(probs[0, predicted]), "words": words,
                         "attributions": scores, "explained": labels[0], "baseline_probability": float("nan")})
    finally:
        channel.close()
    return _frame(rows)
