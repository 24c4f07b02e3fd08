"""Model warm-up from ``assets.extra/tf_serving_warmup_requests``, as TF Serving does it.

The file is a TFRecord of ``PredictionLog`` protos. Running them before a
version becomes AVAILABLE traces and compiles the graph (and fills caches), so
the first real request does not pay for it. A failing warm-up request fails the
load: a version that cannot answer its own warm-up must not serve traffic.
"""
from __future__ import annotations

import logging

from llmos_tf._tf import tf
from llmos_tf.serving.servable import Servable

log = logging.getLogger("llmos_tf.serving")
WARMUP_FILE = ("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


def warm_up(servable: Servable) -> int:
    """Run the version's warm-up requests; return how many ran."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = servable.path.joinpath(*WARMUP_FILE)
    if not path.is_file():
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
        entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        kind = entry.WhichOneof("log_type")
        if kind != "predict_log":
            raise ValueError(f"{path}: warm-up record {count + 1} is a {kind}; only predict_log is supported")
        request = entry.predict_log.request
        signature = request.model_spec.signature_name or "serving_default"
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        servable.validate(signature, inputs)
        servable.run(signature, inputs)
        count += 1
    log.info("%s version %d: ran %d warm-up requests", servable.name, servable.version, count)
    return count
