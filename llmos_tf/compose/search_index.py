"""``llmos index``: semantic search over a corpus, as an ordinary SavedModel version.

The version holds the encoder (a published ``encode`` signature or a pretrained checkpoint), the
corpus's unit vectors as a float32 or int8 matrix, and the corpus texts. Its ``search`` signature:

* inputs: ``query`` string ``[None]``, ``k`` int32 ``[None]`` (one per query);
* outputs: ``ids`` int64 ``[None, K]`` (0-based corpus rows), ``texts`` string ``[None, K]``,
  ``scores`` float32 ``[None, K]`` (cosine similarity), plus ``payloads`` string ``[None, K]`` when the
  index was built with ``--payload_column`` (e.g. the answer of an FAQ question). ``K`` is the largest
  ``k`` of the batch; a row with a smaller ``k`` is padded with id ``-1``, text ``""`` and score 0.

Search is brute force: one matmul against the whole matrix and ``tf.math.top_k``, so the result is
exact and needs no custom op (ScaNN's ops are not in the stock ``tensorflow_model_server``). A bad
request -- ``k`` < 1, ``k`` larger than the corpus, an empty query -- fails a ``tf.debugging`` assertion
inside the graph, which any TF Serving answers as INVALID_ARGUMENT (HTTP 400 over REST).

Because an index is a model version, ``llmos serve`` (or TF Serving) hot-reloads it: build version 2
into the same base path and it replaces version 1 under load; a broken version 2 fails to load and
version 1 keeps answering.

Example::

    build_index("minilm-l6", "faq.csv", "saved_models", "faq", payload_column="answer")
    m = tf.saved_model.load("saved_models/faq/1")
    m.signatures["search"](query=tf.constant(["card stolen"]), k=tf.constant([3]))
"""
from __future__ import annotations

import pathlib

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.compose.common import command_line, publish, target
from llmos_tf.compose.embeddings import Encoder, load_encoder
from llmos_tf.compose.plan import MATRIX_DTYPES, read_corpus
from llmos_tf.errors import ConfigError, RunError
from llmos_tf.export.signatures import ENCODE_OUTPUT

SEARCH = "search"
QUERY_SPEC = tf.TensorSpec([None], tf.string, name="query")
K_SPEC = tf.TensorSpec([None], tf.int32, name="k")


def quantize_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: ``vectors ~= q * scale[:, None]`` (a unit vector loses < 0.4% of a score)."""
    peak = np.abs(vectors).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(vectors / scale), -127, 127).astype(np.int8), scale[:, 0]


class SearchModule(tf.Module):
    """Encoder + corpus matrix + texts; ``search`` is exact top-k by cosine similarity."""

    def __init__(self, encoder: Encoder, vectors: np.ndarray, texts: list[str], payloads: list[str] | None = None, dtype: str = "float32"):
        super().__init__(name="llmos_search_index")
        if dtype not in MATRIX_DTYPES:
            raise ConfigError(f"--dtype: expected one of {', '.join(MATRIX_DTYPES)}, got {dtype!r}")
        self.encoder = encoder.trackable
        function = encoder.function  # the encoder's signature; a closure keeps it out of the saved object graph
        self._encode = lambda text: function(text=text)
        self.size = int(len(texts))
        # variables, not constants: a large corpus stays out of the 2 GB graph proto
        if dtype == "int8":
            q, scale = quantize_rows(vectors)
            self.matrix = tf.Variable(q, trainable=False, name="corpus_int8")
            self.row_scale = tf.Variable(scale, trainable=False, name="corpus_scale")
        else:
            self.matrix = tf.Variable(np.asarray(vectors, np.float32), trainable=False, name="corpus_float32")
            self.row_scale = None
        self.texts = tf.Variable(np.array(texts, dtype=object), trainable=False, dtype=tf.string, name="corpus_texts")
        self.payloads = tf.Variable(np.array(payloads, dtype=object), trainable=False, dtype=tf.string, name="corpus_payloads") if payloads is not None else None
        self.search = tf.function(self._search, input_signature=[QUERY_SPEC, K_SPEC])

    def scores(self, vectors: tf.Tensor) -> tf.Tensor:
        """``[B, N]`` cosine similarities of unit query vectors with every corpus row."""
        if self.row_scale is None:
            return tf.matmul(vectors, self.matrix, transpose_b=True)
        return tf.matmul(vectors, tf.cast(self.matrix, tf.float32), transpose_b=True) * self.row_scale[tf.newaxis, :]

    def _search(self, query: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        size = tf.constant(self.size, tf.int32)
        checks = [
            tf.debugging.assert_equal(tf.shape(k)[0], tf.shape(query)[0], message="search: give one k per query"),
            tf.debugging.assert_positive(k, message="search: k must be at least 1"),
            tf.debugging.assert_less_equal(k, size, message=f"search: k must be at most the corpus size ({self.size} rows)"),
            tf.debugging.assert_positive(tf.strings.length(tf.strings.strip(query)), message="search: empty query text"),
        ]
        with tf.control_dependencies(checks):
            vectors = tf.identity(self._encode(query)[ENCODE_OUTPUT])
        widest = tf.clip_by_value(tf.reduce_max(tf.concat([k, [1]], 0)), 1, size)
        top = tf.math.top_k(self.scores(vectors), k=widest, sorted=True)
        keep = tf.range(widest)[tf.newaxis, :] < k[:, tf.newaxis]
        out = {
            "ids": tf.where(keep, tf.cast(top.indices, tf.int64), tf.constant(-1, tf.int64)),
            "texts": tf.where(keep, tf.gather(self.texts, top.indices), ""),
            "scores": tf.where(keep, top.values, 0.0),
        }
        if self.payloads is not None:
            out["payloads"] = tf.where(keep, tf.gather(self.payloads, top.indices), "")
        return out


def build_index(model: str, corpus: str, model_base_path: str | pathlib.Path, name: str, *, text_column: str | None = None,
                payload_column: str | None = None, dtype: str = "float32", batch_size: int = 64, version: int | None = None,
                force: bool = False, command: str | None = None) -> pathlib.Path:
    """Encode ``corpus`` with ``model`` and write the index as ``<model_base_path>/<name>/<version>``."""
    from llmos_tf.data.fingerprint import file_sha256

    if dtype not in MATRIX_DTYPES:
        raise ConfigError(f"--dtype: expected one of {', '.join(MATRIX_DTYPES)}, got {dtype!r}")
    texts, payloads, _ = read_corpus(corpus, text_column, payload_column)  # before any model loads
    model_dir, version, final_dir = target(model_base_path, name, version, force)
    encoder = load_encoder(model)
    vectors = encoder.encode(texts, batch_size=batch_size).astype(np.float32)
    module = SearchModule(encoder, vectors, texts, payloads, dtype=dtype)
    probe_queries = tf.constant(texts[:3])
    probe_k = tf.constant([min(3, len(texts))] * int(probe_queries.shape[0]), tf.int32)
    expected = module.search(probe_queries, probe_k)

    def verify(saved: pathlib.Path) -> None:
        got = tf.saved_model.load(str(saved)).signatures[SEARCH](query=probe_queries, k=probe_k)
        if not np.array_equal(got["ids"].numpy(), expected["ids"].numpy()) or not np.allclose(got["scores"].numpy(), expected["scores"].numpy(), atol=1e-5):
            raise RunError("index check failed: the reloaded SavedModel searches differently")

    card = {
        "name": name, "version": version, "task": "semantic_search", "kind": "search_index",
        "signature": f"{SEARCH}: query string [None], k int32 [None] -> ids int64, texts string, scores float32 [None, max k]"
                     + (", payloads string" if payloads is not None else ""),
        "corpus": {"file": str(corpus), "rows": len(texts), "fingerprint": file_sha256(corpus), "text_column": text_column,
                   "payload_column": payload_column},
        "matrix": {"dtype": dtype, "rows": int(vectors.shape[0]), "dim": int(vectors.shape[1]), "similarity": "cosine (unit vectors, dot product)",
                   "search": "exact brute force: matmul + tf.math.top_k"},
        "encoder": {"architecture": "bert", "model": model, **{k: v for k, v in encoder.info.items() if k in ("kind", "checkpoint", "path", "max_length", "weights")}},
        "metrics": {}, "export_command": command or command_line(),
    }
    warmup = {"query": np.array([t.encode() for t in texts[:2]], dtype=object), "k": np.array([1] * min(2, len(texts)), np.int32)}
    return publish(module, {SEARCH: module.search}, model_dir, final_dir, force=force, card=card, labels=None, verify=verify,
                   warmup=(SEARCH, warmup))
