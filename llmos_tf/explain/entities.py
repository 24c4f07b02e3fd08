"""Per-entity integrated gradients for NER taggers (BERT and BiLSTM, softmax or CRF heads), in plain TF ops.

For every entity the tagger predicts (a conlleval chunk of its word tags: span + type), each word
of the sentence gets a score: the integrated gradients (:mod:`~llmos_tf.explain.attributions`,
baseline = the padding embedding at every word piece) of

    f_e(x) = sum over the entity's words w of  log p(tag_w | x)   (on w's first word piece)

where ``tag_w`` is the decoded ``B-``/``I-`` tag of ``w``. Why the log-probabilities of the span's
tags and not their probabilities or raw logits:

* for a softmax tagger the tags of different words are independent given the sentence, so the sum
  is the log-probability of the whole entity's tag sequence: one quantity, additive over words,
  whose attributions add up (completeness) to ``f_e(x) - f_e(baseline)``;
* for a CRF tagger, ``log p`` of the model's output is ``log_softmax(emissions)``, exactly the unary
  scores Viterbi decodes with (:meth:`llmos_tf.models.crf.CRF.decode`); the transition scores do not
  depend on the input, so ``f_e`` is the part of the decoded path's score that the input moves, over
  the entity's span. Raw emissions are not used: a CRF is blind to a constant added to one position's
  scores, so their level means nothing.

All entities of a batch are explained in ONE graph call: each entity gets its sentence's word pieces
as its own row (``entities x (steps + 2)`` rows), with its own objective. The tags come from one
forward pass before it (argmax, or Viterbi for a CRF), as ``serving_default`` tags them.

:class:`EntityExplainer` is what a tagger export's ``explain`` signature runs; ``Run.explain`` /
``llmos explain`` on a tagger run use it in-process (:mod:`llmos_tf.explain.entity_frame`).

Example::

    explainer = EntityExplainer(tagger.text_encoder(), model, tagger.labels.names, crf=tagger.crf)
    out = explainer(tf.constant(["Anna Berg flew to Oslo ."]))
    out["entity_types"], out["entity_starts"], out["entity_ends"]   # [B, E] (padded with "" / -1)
    out["attributions"]                                              # [B, E, W] word scores per entity
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from llmos_tf._tf import tf
from llmos_tf.explain.attributions import DEFAULT_STEPS, path_integrated_gradients, token_embedding_layer
from llmos_tf.text.alignment import encode_words, split_words, word_predictions_from_subwords

_TINY = float(np.finfo(np.float32).tiny)


def _split_tags(tags: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``B-PER`` -> (``B``, ``PER``), ``O`` -> (``O``, ``""``): conlleval's first two ``-`` fields."""
    prefix = tf.strings.regex_replace(tags, "^([^-]*).*$", r"\1")
    kind = tf.where(tf.strings.regex_full_match(tags, "[^-]*-.*"), tf.strings.regex_replace(tags, "^[^-]*-([^-]*).*$", r"\1"), "")
    return prefix, kind


def entity_chunks(tags: tf.Tensor, valid: tf.Tensor) -> dict[str, tf.Tensor]:
    """conlleval chunks of word tags ``[B, W]`` (``valid``: the sentence's words) in plain TF ops.

    Same boundaries as :func:`llmos_tf.metrics.conlleval.entity_spans` (a chunk starts at ``B-``, at
    ``I-`` after ``O``, at a change of type; ends before ``B-``, ``O``, a change of type). Returns
    ``entity [B, W]`` (the chunk index of each word within its sentence, -1 outside), ``count [B]``,
    and ragged ``[B, (E)]`` ``types``, ``starts``, ``ends`` (word offsets, ``end`` exclusive).
    """
    tags = tf.where(tf.cast(valid, tf.bool), tags, "O")
    prefix, kind = _split_tags(tags)
    batch, width = tf.shape(tags)[0], tf.shape(tags)[1]
    pad = lambda x, v: tf.concat([tf.fill([batch, 1], v), x], axis=1)[:, :width]  # noqa: E731  (the previous word's)
    prev, prev_kind = pad(prefix, "O"), pad(kind, "")
    is_ = lambda x, *values: tf.reduce_any(tf.stack([tf.equal(x, v) for v in values]), axis=0)  # noqa: E731
    start = ((is_(prev, "B", "I", "O") & tf.equal(prefix, "B")) | (tf.equal(prev, "O") & is_(prefix, "I", "E"))
             | (tf.equal(prev, "E") & is_(prefix, "E", "I")) | (~is_(prefix, "O", ".") & tf.not_equal(prev_kind, kind))
             | is_(prefix, "[", "]"))
    end = ((is_(prev, "B", "I") & is_(prefix, "B", "O")) | (tf.equal(prev, "E") & is_(prefix, "E", "I", "O"))
           | (~is_(prev, "O", ".") & tf.not_equal(prev_kind, kind)) | is_(prev, "[", "]"))
    # a word is in a chunk when the last start at or before it comes no earlier than the last end (a chunk
    # that ends and starts at the same word is a new chunk); [B, W, W] is small (W = words of a sentence)
    index = tf.range(width)
    before = index[None, :] <= index[:, None]  # [i, j]: j <= i
    last = lambda flags: tf.reduce_max(tf.where(before[None] & flags[:, None, :], index[None, None, :], -1), axis=2)  # noqa: E731
    last_start, last_end = last(start), last(end & ~start)
    inside = (last_start >= 0) & (last_start >= last_end) & tf.cast(valid, tf.bool)
    number = tf.cumsum(tf.cast(start, tf.int32), axis=1) - 1
    entity = tf.where(inside, number, -1)
    count = tf.reduce_max(entity, axis=1) + 1
    count = tf.maximum(count, 0)
    # chunks as ragged rows: first word, last word and type of every chunk (numbered 0.. within a sentence)
    flat = tf.reshape(entity, [-1])
    member = flat >= 0
    segment = tf.gather(tf.cumsum(count, exclusive=True), tf.boolean_mask(tf.repeat(tf.range(batch), width), member)) + tf.boolean_mask(flat, member)
    total = tf.reduce_sum(count)
    positions = tf.boolean_mask(tf.tile(index, [batch]), member)
    starts = tf.math.unsorted_segment_min(positions, segment, total)
    ends = tf.math.unsorted_segment_max(positions, segment, total) + 1
    first = tf.math.unsorted_segment_min(tf.range(tf.size(segment)), segment, total)
    types = tf.gather(tf.boolean_mask(tf.reshape(kind, [-1]), member), first)
    ragged = lambda x: tf.RaggedTensor.from_row_lengths(x, tf.cast(count, tf.int64))  # noqa: E731
    return {"entity": entity, "count": count, "types": ragged(types), "starts": ragged(starts), "ends": ragged(ends)}


@dataclass(frozen=True)
class _Held:
    """What :class:`EntityExplainer` uses but must not save (its owner, the serving module, tracks them)."""

    text_encoder: Any
    model: Any
    layer: Any
    crf: Any


class EntityExplainer(tf.Module):
    """Sentences (whitespace tokens) → the tagger's entities and, per entity, word-level integrated gradients.

    ``model``: the tagger (tf_keras, or its :class:`QuantizedModel`) giving per-piece tag probabilities;
    ``crf``: its CRF layer (Viterbi decoding), or None for argmax. ``__call__(text)`` returns
    ``tokens [B, W]``, ``tags [B, W]``, ``token_count [B]``, ``entity_count [B]``, ``entity_types``,
    ``entity_starts``, ``entity_ends [B, E]`` (padded with ``""`` / -1), ``attributions [B, E, W]``,
    ``entity_scores``/``entity_baseline_scores [B, E]`` (``f_e`` at the sentence and at the baseline; the
    attributions of an entity sum to their difference).
    """

    def __init__(self, text_encoder, model, tag_names: Sequence[str], crf=None, outside_tag: str = "O",
                 steps: int = DEFAULT_STEPS, name: str = "entity_explainer"):
        super().__init__(name=name)
        self._held = _Held(text_encoder, model, token_embedding_layer(model), crf)
        self.tag_names = [str(t) for t in tag_names]
        self.outside_id = self.tag_names.index(outside_tag) if outside_tag in self.tag_names else 0
        self.steps = int(steps)
        self._graph = None

    def __call__(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        text = tf.convert_to_tensor(text, tf.string)
        if tf.executing_eagerly():
            if self._graph is None:  # one trace for every batch
                self._graph = tf.function(self.explain_graph, input_signature=[tf.TensorSpec([None], tf.string)])
            return self._graph(text)
        return self.explain_graph(text)

    def _features(self, token_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        pad = self._held.text_encoder.pad_id
        return {"token_ids": token_ids, "padding_mask": tf.cast(tf.not_equal(token_ids, pad), tf.int32), "segment_ids": tf.zeros_like(token_ids)}

    def explain_graph(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        encoder, model, crf = self._held.text_encoder, self._held.model, self._held.crf
        words = split_words(text)
        enc = encode_words(encoder, words, padded=False)
        token_ids = tf.cast(enc["token_ids"].to_tensor(default_value=encoder.pad_id), tf.int32)
        label_mask = enc["label_mask"].to_tensor(default_value=False)
        word_ids = tf.cast(enc["word_ids"].to_tensor(default_value=-1), tf.int32)
        word_count = tf.cast(enc["word_count"], tf.int32)
        # the tags, exactly as serving_default decodes them
        probabilities = tf.cast(model(self._features(token_ids), training=False), tf.float32)
        decoded = crf.decode(probabilities, label_mask) if crf is not None else probabilities
        word_tags = word_predictions_from_subwords(decoded, label_mask, word_count, outside_id=self.outside_id)
        width = tf.shape(words.to_tensor(default_value=""))[1]
        tag_ids = word_tags.to_tensor(default_value=self.outside_id, shape=tf.stack([tf.shape(text)[0], width]))
        valid = tf.sequence_mask(word_count, width)
        tags = tf.where(valid, tf.gather(tf.constant(self.tag_names), tag_ids), "")
        chunks = entity_chunks(tags, valid)

        # one row per entity: its sentence's pieces, weights on the first pieces of its words, their tags as targets
        safe = tf.maximum(word_ids, 0)
        on_word = label_mask & (word_ids >= 0)
        piece_entity = tf.where(on_word, tf.gather(chunks["entity"], safe, batch_dims=1), -1)
        piece_tag = tf.gather(tag_ids, safe, batch_dims=1)
        row = chunks["types"].value_rowids()
        local = tf.cast(tf.ragged.range(tf.cast(chunks["count"], tf.int64)).flat_values, tf.int32)
        weights = tf.cast(tf.equal(tf.gather(piece_entity, row), local[:, None]), tf.float32)  # [E, T]
        targets = tf.gather(piece_tag, row)
        entity_ids = tf.gather(token_ids, row)
        entity_word_ids = tf.gather(word_ids, row)
        special = [encoder.cls_id, encoder.sep_id]

        def explain_entities():
            def span_log_probability(outputs):  # [rows, E, T, K] -> [rows, E]
                rows = tf.shape(outputs)[0]
                picked = tf.gather(outputs, tf.tile(targets[None], [rows, 1, 1]), batch_dims=3)
                return tf.reduce_sum(tf.math.log(tf.maximum(picked, _TINY)) * weights[None], axis=-1)

            out = path_integrated_gradients(model, entity_ids, span_log_probability, layer=self._held.layer, features=self._features,
                                            special_ids=special, steps=self.steps)
            return out["attributions"], out["value"], out["baseline_value"]

        entities = tf.size(row)
        empty = lambda: (tf.zeros(tf.shape(entity_ids), tf.float32), tf.zeros([0]), tf.zeros([0]))  # noqa: E731
        piece_scores, score, baseline = tf.cond(entities > 0, explain_entities, empty)
        # pieces -> words: sum the pieces of each word (special tokens and padding have no word)
        segments = tf.where(entity_word_ids >= 0, tf.range(entities)[:, None] * width + entity_word_ids, entities * width)
        word_scores = tf.math.unsorted_segment_sum(piece_scores, segments, entities * width + 1)[:-1]
        word_scores = tf.reshape(word_scores, [entities, width])
        lengths = tf.cast(chunks["count"], tf.int64)
        per_sentence = lambda x, default: tf.RaggedTensor.from_row_lengths(x, lengths).to_tensor(default_value=default)  # noqa: E731
        return {
            "tokens": words.to_tensor(default_value=""),
            "tags": tags,
            "token_count": word_count,
            "entity_count": chunks["count"],
            "entity_types": chunks["types"].to_tensor(default_value=""),
            "entity_starts": chunks["starts"].to_tensor(default_value=-1),
            "entity_ends": chunks["ends"].to_tensor(default_value=-1),
            "attributions": per_sentence(word_scores, 0.0),
            "entity_scores": per_sentence(score, 0.0),
            "entity_baseline_scores": per_sentence(baseline, 0.0),
        }
