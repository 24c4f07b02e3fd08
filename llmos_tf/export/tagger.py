"""Export a finished NER run as a TF Serving version (raw sentences in, one tag per token out).

``serving_default`` (the DESIGN.md contract): input ``text`` tf.string ``[None]``,
each a sentence whose tokens are separated by single spaces; outputs ``tags``
tf.string ``[None, max_tokens]`` (one tag per whitespace token, padded with
``""``) and ``token_count`` int32 ``[None]``. The WordPiece tokenizer, the
first-subword alignment and the mapping back to tokens all run inside the
SavedModel; tokens lost to truncation are tagged ``O``. A CRF tagger's Viterbi
decoding (:mod:`llmos_tf.models.crf`) runs in the graph too, in ``postprocess``:
the model (and ``model.tflite``) gives per-token probabilities, the CRF's
transition scores are variables of the SavedModel.

``explain`` (every version with a model, compressed ones too): ``text`` → ``tokens``, ``tags``,
``token_count``, the predicted entities (``entity_count``, ``entity_types``, ``entity_starts``,
``entity_ends``) and ``attributions`` float32 ``[None, entities, words]``: per entity, each word's
integrated gradients for the sum of the entity's tag log-probabilities
(:mod:`llmos_tf.explain.entities`; plain TF ops, the stock model server runs it).

Example::

    path = export_tagger_run("runs/sample_ner", "saved_models", "sample_ner")
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    fn(text=tf.constant(["Anna Berg joined Acme Corp in Oslo ."]))["tags"]
"""
from __future__ import annotations

import pathlib
from typing import Sequence

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import RunError
from llmos_tf.export.base import POSTPROCESS, PREPROCESS, TEXT_SPEC, ServingExport, model_card, write_version
from llmos_tf.export.layout import version_target
from llmos_tf.export.signatures import EXPLAIN
from llmos_tf.tasks.tagging import TaggingTask
from llmos_tf.text.alignment import encode_words, split_words, word_tags_from_subwords

SIGNATURE = "serving_default: text -> tags, token_count"
# the `explain` signature's outputs (llmos_tf.explain.entities.EntityExplainer)
EXPLAIN_OUTPUTS = ("tokens", "tags", "token_count", "entity_count", "entity_types", "entity_starts", "entity_ends", "attributions",
                   "entity_scores", "entity_baseline_scores")
WARMUP_SENTENCES = ("Anna Berg joined Acme Corp in Oslo .", "hello", "The meeting in Vienna ended without a deal .")
CHECK_SENTENCES = (
    "Anna Berg joined Acme Corp in Oslo last year .",
    "Prices fell sharply in Hong Kong , analysts said .",
    "U.S. stocks rose ; Zürich-based UBS gained 3.5 % !",
    "xqzv ☃ lorem",
    "",
    "a",
)


class TaggerServingModule(tf.Module):
    """Tokenizer + token classifier + tag names: sentences in, tags per whitespace token out.

    ``crf``: the CRF layer whose Viterbi decodes the model's output (default: the
    model's own, found in it; pass it for a model that hides its layers, such as a
    quantized wrapper, or for a TFLite-only module without a model). ``explain=False``: no ``explain``
    (per-entity integrated gradients) function at all, so nothing of it is traced or saved.
    """

    def __init__(self, text_encoder, model: tf_keras.Model, tag_names: Sequence[str], outside_tag: str = "O", crf=None,
                 explain: bool = True):
        from llmos_tf.models.crf import find_crf

        super().__init__(name="llmos_tagger")
        self.text_encoder = text_encoder
        self.model = model
        self.crf = crf if crf is not None else find_crf(model)
        self.tag_names = [str(t) for t in tag_names]
        self.outside_tag = outside_tag

        num_tags = len(self.tag_names)
        self.postprocess = tf.function(self._postprocess, input_signature=[
            tf.TensorSpec([None, None, num_tags], tf.float32, name="probabilities"),
            tf.TensorSpec([None, None], tf.bool, name="label_mask"),
            tf.TensorSpec([None], tf.int32, name="word_count"),
        ])
        if model is not None:  # without a model (a TFLite-only version) only the two halves exist
            self.serve = tf.function(self._serve, input_signature=[TEXT_SPEC])
        # every tagger with a model also exports `explain` (per-entity integrated gradients, llmos_tf.explain.entities)
        self.explainer = _entity_explainer(text_encoder, model, self.tag_names, self.crf, outside_tag) if model is not None and explain else None
        if self.explainer is not None:
            self.explain = tf.function(self._explain, input_signature=[TEXT_SPEC])

    def _encode(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        enc = encode_words(self.text_encoder, split_words(text), padded=False)
        return {
            "token_ids": enc["token_ids"].to_tensor(default_value=self.text_encoder.pad_id),
            "padding_mask": tf.cast(enc["padding_mask"].to_tensor(default_value=False), tf.int32),
            "segment_ids": enc["segment_ids"].to_tensor(default_value=0),
            "label_mask": enc["label_mask"].to_tensor(default_value=False),
            "word_count": tf.cast(enc["word_count"], tf.int32),
        }

    @tf.function(input_signature=[TEXT_SPEC])
    def preprocess(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """Model inputs (``token_ids``, ``padding_mask``, ``segment_ids``) and the word alignment."""
        return self._encode(text)

    def _postprocess(self, probabilities, label_mask, word_count) -> dict[str, tf.Tensor]:
        if self.crf is not None:
            probabilities = self.crf.decode(probabilities, label_mask)  # Viterbi tag ids [B, T] on the first subwords
        tags, token_count = word_tags_from_subwords(probabilities, label_mask, word_count, self.tag_names, outside_label=self.outside_tag)
        return {"tags": tags, "token_count": token_count}

    def _serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        enc = self._encode(text)
        features = {k: enc[k] for k in ("token_ids", "padding_mask", "segment_ids")}
        probabilities = tf.cast(self.model(features, training=False), tf.float32)
        return self._postprocess(probabilities, enc["label_mask"], enc["word_count"])

    def _explain(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """``explain``: text -> ``tokens``/``tags`` string ``[None, W]``, ``token_count``, the predicted entities
        (``entity_count`` int32 ``[None]``, ``entity_types`` string, ``entity_starts``/``entity_ends`` int32
        ``[None, E]``, word offsets, end exclusive, padded with ""/-1) and ``attributions`` float32 ``[None, E, W]``:
        each word's integrated gradients for each entity's tag log-probabilities (``entity_scores`` minus
        ``entity_baseline_scores`` is what an entity's row adds up to)."""
        out = self.explainer(text)
        return {k: out[k] for k in EXPLAIN_OUTPUTS}

    def signatures(self, include_model: bool = True) -> dict:
        out = {PREPROCESS: self.preprocess, POSTPROCESS: self.postprocess}
        if include_model:
            out["serving_default"] = self.serve
        if include_model and self.explainer is not None:
            out[EXPLAIN] = self.explain
        return out


def _entity_explainer(text_encoder, model, tag_names: Sequence[str], crf, outside_tag: str):
    """The module's per-entity explainer, or None when the model has no token embedding to attribute."""
    from llmos_tf.explain.attributions import token_embedding_layer
    from llmos_tf.explain.entities import EntityExplainer

    try:
        token_embedding_layer(model)
    except ValueError:
        return None
    return EntityExplainer(text_encoder, model, tag_names, crf=crf, outside_tag=outside_tag)


def _check_sentences(tagger) -> list[str]:
    long = " ".join(["Oslo"] * (tagger.max_length + 3))  # longer than max_length: the tail must come back as "O"
    return [*CHECK_SENTENCES, long]


def _verify(saved_dir: pathlib.Path, tagger, sentences: Sequence[str]) -> None:
    """The reloaded SavedModel must tag exactly as :meth:`TrainedTagger.predict_tags`."""
    loaded = tf.saved_model.load(str(saved_dir))
    out = loaded.signatures["serving_default"](text=tf.constant(list(sentences)))
    counts = out["token_count"].numpy().tolist()
    got = [[t.decode("utf-8") for t in row[:n]] for row, n in zip(out["tags"].numpy(), counts)]
    expected = tagger.predict_tags(list(sentences))
    if got != expected:
        bad = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
        raise RunError(f"export check failed: the SavedModel tags {sentences[bad]!r} as {got[bad]} but the run gives {expected[bad]}")
    if EXPLAIN in loaded.signatures:  # its entities come from the same tags (the over-long sentence: dozens of entities, skipped)
        explained = loaded.signatures[EXPLAIN](text=tf.constant(list(sentences[:-1])))
        tags = [[t.decode("utf-8") for t in row[:n]] for row, n in zip(explained["tags"].numpy(), explained["token_count"].numpy())]
        if tags != expected[:-1]:
            raise RunError("export check failed: the 'explain' signature's tags differ from serving_default's")


def tagger_export(tagger, name: str, version: int, command: str | None) -> ServingExport:
    """What an NER version holds: the tagger's serving module around its float32 weights, checked on
    sentences with punctuation, non-ASCII, empty and over-long input."""
    from llmos_tf.compression.int8_weights import QuantizedModel

    # float32 weights without the Keras object graph, as the classifier export does (a BiLSTM-CRF tagger:
    # 6.8 -> 1.6 MB and 45 -> 15 s to export); the wrapper hides the model's layers, so the CRF is passed on
    model = QuantizedModel(tagger.model, weight_dtype="float32")
    module = TaggerServingModule(tagger.text_encoder(), model, tagger.labels.names, crf=tagger.crf)
    card = model_card(tagger, name, version, command)
    card.update(task=TaggingTask.name, signature=SIGNATURE, max_length=tagger.max_length, decoding="viterbi" if module.crf is not None else "argmax")
    card["encoder"]["max_length"] = tagger.max_length
    sentences = _check_sentences(tagger)
    return ServingExport(module=module, signatures=module.signatures(), verify=lambda saved: _verify(saved, tagger, sentences),
                         card=card, labels={"labels.txt": tagger.labels.names}, warmup_texts=WARMUP_SENTENCES)


def export_tagger_run(run_dir: str | pathlib.Path, model_base_path: str | pathlib.Path, name: str, version: int | None = None,
                      force: bool = False, command: str | None = None) -> pathlib.Path:
    """Export NER ``run_dir`` to ``<model_base_path>/<name>/<version>``; returns the version folder."""
    from llmos_tf.tasks.tagging import TrainedTagger

    model_dir, version, final_dir = version_target(model_base_path, name, version, force=force)
    tagger = TrainedTagger.load(run_dir)
    return write_version(tagger_export(tagger, name, version, command), model_dir, final_dir, name, force=force)
