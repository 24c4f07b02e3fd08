"""Sentence embeddings: an encoder-only export, and ``llmos encode`` (texts -> Parquet of unit vectors).

all-MiniLM-L6-v2 is a sentence-embedding model (mean pooling + L2 normalisation, trained for cosine
similarity), so the pretrained encoder is useful as it is: :func:`export_encoder` writes it as a
SavedModel whose ``encode`` signature takes raw text (``text`` string ``[None]`` -> ``embedding``
float32 ``[None, 384]``, unit norm). A fine-tuned BERT classifier export has the same ``encode``
signature (:mod:`llmos_tf.export.signatures`), so every command here takes either:

* an encoder spec (``minilm-l6``, a keras-hub / Hugging Face / ``llmos pretrain`` checkpoint folder), or
* a published version with an ``encode`` signature (``saved_models/banking77_bert/2``, ``NAME@label``).

The vectors are what a vector database or ScaNN/FAISS index is fed: :func:`encode_file` writes them to
Parquet (``id``, ``text``, ``embedding`` as a fixed-size list of float32).

Example::

    encoder = load_encoder("minilm-l6")
    vectors = encoder.encode(["lost my card", "card stolen"])       # [2, 384], unit rows
    encode_file("minilm-l6", "faq.csv", "faq_vectors.parquet")
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.compose.common import batched, command_line, load_version, publish, target
from llmos_tf.compose.refs import resolve_version
from llmos_tf.errors import RunError
from llmos_tf.export.base import TEXT_SPEC, WARMUP_TEXTS
from llmos_tf.export.signatures import ENCODE, ENCODE_OUTPUT, mean_pooled_unit_vectors

DEFAULT_MAX_LENGTH = 128  # tokens per text; all-MiniLM-L6-v2 was trained on 128-token inputs


class EncoderServingModule(tf.Module):
    """Tokenizer + BERT encoder -> ``encode``: raw text to L2-normalised mean-pooled vectors."""

    def __init__(self, tokenizer, encoder, max_length: int, weights: str = "float32"):
        super().__init__(name="llmos_encoder")
        from llmos_tf.compression.int8_weights import QuantizedModel

        self.tokenizer = tokenizer
        # float32: the weights without the Keras object graph; int8: 4x smaller, dequantized in the graph
        self.model = QuantizedModel(encoder, weight_dtype=weights)
        self.max_length = int(max_length)
        self.encode = tf.function(self._encode, input_signature=[TEXT_SPEC])

    def _encode(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        from llmos_tf.models.bert_classifier import bert_features

        ids = self.tokenizer(text)[:, : self.max_length].to_tensor(default_value=0)
        ids = tf.pad(ids, [[0, 0], [0, tf.maximum(1 - tf.shape(ids)[1], 0)]])  # an empty batch still has a time step
        features = bert_features(ids)
        sequence = self.model(features, training=False)["sequence_output"]
        return {ENCODE_OUTPUT: mean_pooled_unit_vectors(sequence, features["padding_mask"])}


@dataclass
class Encoder:
    """Something with an ``encode`` signature: a loaded version or a freshly built encoder module.

    ``trackable`` is what a composed module keeps as an attribute so that saving it saves the
    encoder too; ``function`` is its ``encode`` signature (keyword ``text``)."""

    spec: str
    trackable: Any
    function: Callable[..., Any]
    info: dict[str, Any] = field(default_factory=dict)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return batched(self.function, texts, ENCODE_OUTPUT, batch_size=batch_size)

    @property
    def dim(self) -> int:
        return int(self.function(text=tf.constant(["x"]))[ENCODE_OUTPUT].shape[-1])


def is_encoder_spec(value: str) -> bool:
    """An encoder checkpoint (``minilm-l6``, a checkpoint folder) rather than a published version."""
    from llmos_tf.models.pretrained import MINILM_SPEC, is_encoder_folder

    if value == MINILM_SPEC:
        return True
    path = pathlib.Path(value)
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        return is_encoder_folder(path) or (path / "config.json").is_file()
    return False


def build_encoder_module(spec: str, max_length: int = DEFAULT_MAX_LENGTH, weights: str = "float32") -> tuple[EncoderServingModule, dict[str, Any]]:
    """The pretrained encoder ``spec`` (e.g. ``minilm-l6``) with its own WordPiece tokenizer, as a serving module."""
    from llmos_tf.models.bert_classifier import BertTokenIds
    from llmos_tf.models.pretrained import load_pretrained_encoder

    encoder, vocabulary, info = load_pretrained_encoder(spec, dropout=0.0)
    max_length = min(int(max_length), int(info["config"]["max_sequence_length"]))
    lowercase = bool(info.get("lowercase", True))
    tokenizer = BertTokenIds(vocabulary, max_length, lowercase=lowercase, strip_accents=lowercase)
    module = EncoderServingModule(tokenizer, encoder, max_length, weights=weights)
    facts = {"checkpoint": spec, "source": info.get("source"), "format": info.get("format"), "lowercase": lowercase,
             "max_length": max_length, "hidden_dim": int(info["config"]["hidden_dim"]), "num_layers": int(info["config"]["num_layers"]),
             "weights": weights}
    return module, facts


def load_encoder(spec: str, flag: str = "--model") -> Encoder:
    """An encoder spec or a published version with an ``encode`` signature (refused, with the reason, otherwise)."""
    if is_encoder_spec(spec):
        module, facts = build_encoder_module(spec)
        return Encoder(spec, module, module.encode, {"kind": "pretrained encoder", **facts})
    if not pathlib.Path(spec.rsplit("@", 1)[0]).exists() and "/" not in spec:
        from llmos_tf.models.pretrained import resolve_checkpoint

        resolve_checkpoint(spec)  # a keras-hub preset name: its own error says what is missing (network, package)
        module, facts = build_encoder_module(spec)
        return Encoder(spec, module, module.encode, {"kind": "pretrained encoder", **facts})
    ref = resolve_version(spec, flag=flag)
    signatures = _signature_names(ref.version_dir)  # from saved_model.pb, before loading any weights
    if signatures is not None and ENCODE not in signatures:
        raise RunError(f"{flag} {spec}: {ref.version_dir} has no {ENCODE!r} signature (signatures: {', '.join(sorted(signatures))}); "
                       "BERT classifiers exported by this llmos have one (re-export older versions: llmos export --run RUN ...), "
                       "or pass an encoder: --model minilm-l6")
    loaded = load_version(ref, flag=flag, signature=ENCODE)
    return Encoder(spec, loaded, loaded.signatures[ENCODE], {"kind": "published version", **ref.describe()})


def _signature_names(version_dir: pathlib.Path) -> set[str] | None:
    """The signature keys in ``saved_model.pb`` (None when it cannot be parsed: loading then says why)."""
    from llmos_tf.serving.servable import read_signature_defs

    try:
        return {key for key in read_signature_defs(version_dir) if not key.startswith("__")}
    except Exception:  # a corrupt file: load_version reports the loader's reason
        return None


def export_encoder(spec: str, model_base_path: str | pathlib.Path, name: str, *, max_length: int = DEFAULT_MAX_LENGTH, weights: str = "float32",
                   version: int | None = None, force: bool = False, command: str | None = None) -> pathlib.Path:
    """Publish the pretrained encoder ``spec`` as ``<base>/<name>/<version>`` with an ``encode`` signature."""
    if weights not in ("float32", "int8"):
        raise RunError(f"--weights: expected float32 or int8, got {weights!r}")
    model_dir, version, final_dir = target(model_base_path, name, version, force)
    module, facts = build_encoder_module(spec, max_length, weights)
    texts = tf.constant(list(WARMUP_TEXTS))
    expected = module.encode(texts)[ENCODE_OUTPUT].numpy()

    def verify(saved: pathlib.Path) -> None:
        got = tf.saved_model.load(str(saved)).signatures[ENCODE](text=texts)[ENCODE_OUTPUT].numpy()
        if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
            raise RunError("encoder export check failed: the reloaded SavedModel encodes differently")

    card = {"name": name, "version": version, "task": "sentence_embedding", "kind": "encoder",
            "signature": f"{ENCODE}: text -> {ENCODE_OUTPUT} float32 [None, {facts['hidden_dim']}] (mean-pooled, L2-normalised)",
            "encoder": {"architecture": "bert", **facts}, "metrics": {}, "export_command": command or command_line()}
    return publish(module, {ENCODE: module.encode}, model_dir, final_dir, force=force, card=card, labels=None, verify=verify,
                   warmup=(ENCODE, {"text": np.array([t.encode() for t in WARMUP_TEXTS], dtype=object)}))


def encode_file(model: str, path: str, out: str | pathlib.Path, *, text_column: str | None = None, batch_size: int = 64,
                encoder: Encoder | None = None) -> pathlib.Path:
    """Encode every text of ``path`` and write ``out`` (Parquet: ``id``, ``line``, ``text``, ``embedding``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from llmos_tf.data.readers import read_texts

    out = pathlib.Path(out)
    if out.suffix.lower() != ".parquet":
        raise RunError(f"--out {out}: expected a .parquet file")
    frame = read_texts(path, text_column)  # empty file or empty rows: refused here, naming the line
    encoder = encoder or load_encoder(model)
    vectors = encoder.encode(list(frame["text"]), batch_size=batch_size).astype(np.float32)
    dim = vectors.shape[1]
    table = pa.table({
        "id": pa.array(np.arange(len(frame), dtype=np.int64)),
        "line": pa.array(frame["line"].to_numpy(np.int64)),
        "text": pa.array(list(frame["text"]), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
    }).replace_schema_metadata({"llmos.model": str(model), "llmos.normalized": "l2", "llmos.dim": str(dim), "llmos.source": str(path)})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)
    return out
