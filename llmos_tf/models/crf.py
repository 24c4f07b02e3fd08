"""A linear-chain conditional random field (CRF) for taggers, in plain TensorFlow ops.

A tagger's network gives every token a score per tag (``scores [B, T, K]``); a
CRF adds a score for every tag *pair* and scores whole tag sequences
(Lafferty et al. 2001; the BiLSTM-CRF of Lample et al. 2016)::

    score(y) = start[y_1] + sum_t scores[t, y_t] + sum_t transitions[y_{t-1}, y_t] + end[y_n]
    log p(y) = score(y) - log Z,     log Z = logsumexp over all K**n sequences

``log Z`` comes from the forward algorithm (log space, ``tf.foldl``), the best
sequence from Viterbi (``tf.scan`` forward with back-pointers, then backward);
both run inside ``tf.function``s and SavedModel signatures (TensorFlow Addons,
which had ``crf_log_likelihood``/``crf_decode``, is no longer maintained).

Masks: positions where ``mask`` is False are *skipped*: the chain links the
kept positions in order. A tagger passes subword scores with its first-subword
``label_mask`` (a word's tag sits on its first subword), and padding, ``[CLS]``,
``[SEP]`` and continuation subwords drop out. A row with no kept position has
log-likelihood 0 and decodes to nothing.

Adding a constant to all K scores of one position shifts every sequence's score
by that constant, so ``log_softmax(emissions)`` gives exactly the likelihood and
the best path of ``emissions``. The :class:`CRF` layer therefore returns per-token
softmax probabilities like a softmax tagger head (argmax, distillation, TFLite and
the ``postprocess`` signature keep working unchanged) and holds the transition
scores; :meth:`CRF.decode` runs Viterbi on their logarithm.

Example::

    emissions = tf_keras.layers.Dense(num_tags, dtype="float32")(features)   # [B, T, K]
    crf = CRF(num_tags, name="crf")
    probabilities = crf(emissions)                                            # [B, T, K]
    model.compile(optimizer="adam", loss=CRFLoss(crf))                        # labels -1: not in the chain
    tags = crf.decode(model(x), mask)                                         # [B, T] int32, 0 where masked
"""
from __future__ import annotations

import numpy as np

from llmos_tf._tf import tf, tf_keras
from llmos_tf.models.bert import PACKAGE

IGNORE_LABEL = -1
_TINY = float(np.finfo(np.float32).tiny)  # log(0) guard: probabilities that underflowed


def log_probabilities(probabilities) -> tf.Tensor:
    """``log(p)`` in float32, with underflowed zeros mapped to ``log(float32 tiny)`` (about -87)."""
    return tf.math.log(tf.maximum(tf.cast(probabilities, tf.float32), _TINY))


def _kept_first(mask):
    """Per row: the order that moves kept positions to the front (in order), and how many are kept."""
    mask = tf.cast(mask, tf.bool)
    length = tf.shape(mask)[1]
    key = tf.range(length)[None, :] + length * tf.cast(tf.logical_not(mask), tf.int32)  # distinct keys
    return tf.argsort(key, axis=1), tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)


def _aligned(scores, mask):
    """Scores with every row's kept positions moved to its front, at least one step long, and the masks."""
    scores = tf.cast(tf.convert_to_tensor(scores), tf.float32)
    if mask is None:
        mask = tf.ones(tf.shape(scores)[:2], tf.bool)
    order, lengths = _kept_first(mask)
    scores = tf.gather(scores, order, batch_dims=1)
    scores = tf.pad(scores, [[0, 0], [0, tf.maximum(1 - tf.shape(scores)[1], 0)], [0, 0]])
    steps = tf.sequence_mask(lengths, tf.shape(scores)[1])
    return scores, steps, lengths, order


def _time_major(x):
    return tf.transpose(x, tf.concat([[1, 0], tf.range(2, tf.rank(x))], axis=0))


def crf_log_norm(scores, mask, transitions, start, end) -> tf.Tensor:
    """``log Z`` per row ``[B]`` by the forward algorithm in log space."""
    s, steps, lengths, _ = _aligned(scores, mask)

    def step(alpha, inputs):
        s_t, m_t = inputs
        nxt = tf.reduce_logsumexp(alpha[:, :, None] + transitions[None], axis=1) + s_t
        return tf.where(m_t[:, None], nxt, alpha)

    alpha = tf.foldl(step, (_time_major(s[:, 1:]), _time_major(steps[:, 1:])), initializer=start[None] + s[:, 0])
    log_z = tf.reduce_logsumexp(alpha + end[None], axis=1)
    return tf.where(lengths > 0, log_z, 0.0)


def crf_sequence_score(scores, tags, mask, transitions, start, end) -> tf.Tensor:
    """``score(tags)`` per row ``[B]``: unary scores plus start, pair and end transitions."""
    s, steps, lengths, order = _aligned(scores, mask)
    tags = tf.gather(tf.cast(tags, tf.int32), order, batch_dims=1)
    tags = tf.pad(tags, [[0, 0], [0, tf.shape(s)[1] - tf.shape(tags)[1]]])
    tags = tf.where(steps, tags, 0)
    weight = tf.cast(steps, tf.float32)
    unary = tf.reduce_sum(tf.gather(s, tags, batch_dims=2) * weight, axis=1)
    pairs = tf.gather_nd(transitions, tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1))
    binary = tf.reduce_sum(pairs * weight[:, 1:], axis=1)
    last = tf.gather(tags, tf.maximum(lengths - 1, 0), batch_dims=1)
    ends = (tf.gather(start, tags[:, 0]) + tf.gather(end, last)) * tf.cast(lengths > 0, tf.float32)
    return unary + binary + ends


def crf_log_likelihood(scores, tags, mask, transitions, start, end) -> tf.Tensor:
    """``log p(tags)`` per row ``[B]`` (0 for rows with no kept position)."""
    return crf_sequence_score(scores, tags, mask, transitions, start, end) - crf_log_norm(scores, mask, transitions, start, end)


def viterbi_decode(scores, mask, transitions, start, end) -> tuple[tf.Tensor, tf.Tensor]:
    """The best tag sequence: ``tags [B, T]`` int32 (0 at masked positions) and its score ``[B]``."""
    s, steps, lengths, order = _aligned(scores, mask)
    stay = tf.broadcast_to(tf.range(tf.shape(s)[2])[None], tf.shape(s[:, 0]))  # back-pointer of a skipped step

    def step(carry, inputs):
        score, _ = carry
        s_t, m_t = inputs
        candidates = score[:, :, None] + transitions[None]  # [B, from, to]
        best = tf.reduce_max(candidates, axis=1) + s_t
        back = tf.argmax(candidates, axis=1, output_type=tf.int32)
        return tf.where(m_t[:, None], best, score), tf.where(m_t[:, None], back, stay)

    first = start[None] + s[:, 0]
    forward, backs = tf.scan(step, (_time_major(s[:, 1:]), _time_major(steps[:, 1:])), initializer=(first, stay))
    final = tf.concat([first[None], forward], axis=0)[-1] + end[None]
    last = tf.argmax(final, axis=1, output_type=tf.int32)
    earlier = tf.scan(lambda tag, back: tf.gather(back, tag[:, None], batch_dims=1)[:, 0], backs, initializer=last, reverse=True)
    path = tf.transpose(tf.concat([earlier, last[None]], axis=0))  # [B, T'] front-aligned
    inverse = tf.argsort(order, axis=1)
    tags = tf.gather(path, inverse, batch_dims=1)
    if mask is not None:
        tags = tf.where(tf.cast(mask, tf.bool), tags, 0)
    best = tf.where(lengths > 0, tf.reduce_max(final, axis=1), 0.0)
    return tags, best


@tf_keras.saving.register_keras_serializable(package=PACKAGE)
class CRF(tf_keras.layers.Layer):
    """Linear-chain CRF head: emission scores ``[B, T, K]`` in, per-token softmax probabilities out.

    Holds ``transitions [K, K]`` (from, to), ``start_transitions [K]`` and
    ``end_transitions [K]``, all float32 whatever the dtype policy. Training
    uses :class:`CRFLoss` (the sequence log-likelihood), prediction
    :meth:`decode` (Viterbi); see the module docstring for why the output is a softmax.
    """

    def __init__(self, num_tags: int, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"num_tags={num_tags!r}: must be a positive integer")
        self.num_tags = num_tags
        self.supports_masking = True

    def build(self, input_shape):
        k = self.num_tags
        self.transitions = self.add_weight("transitions", shape=[k, k], initializer="zeros")
        self.start_transitions = self.add_weight("start_transitions", shape=[k], initializer="zeros")
        self.end_transitions = self.add_weight("end_transitions", shape=[k], initializer="zeros")
        super().build(input_shape)

    def call(self, emissions):
        return tf.nn.softmax(tf.cast(emissions, tf.float32), axis=-1)

    def _params(self):
        return self.transitions, self.start_transitions, self.end_transitions

    def log_likelihood(self, scores, tags, mask=None) -> tf.Tensor:
        """``log p(tags)`` per row; ``scores`` are emissions or log-probabilities (the same result)."""
        return crf_log_likelihood(scores, tags, mask, *self._params())

    def viterbi(self, scores, mask=None) -> tuple[tf.Tensor, tf.Tensor]:
        """Best tags ``[B, T]`` (0 where masked) and their scores, from emissions or log-probabilities."""
        return viterbi_decode(scores, mask, *self._params())

    def decode(self, probabilities, mask=None) -> tf.Tensor:
        """Viterbi tags ``[B, T]`` int32 from this layer's output (0 where ``mask`` is False)."""
        return self.viterbi(log_probabilities(probabilities), mask)[0]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "num_tags": self.num_tags}

    def get_prunable_weights(self):  # TF-MOT: wrappable, and the K x K scores are not pruned
        return []


@tf_keras.saving.register_keras_serializable(package=PACKAGE)
class CRFLoss(tf_keras.losses.Loss):
    """Negative CRF log-likelihood of the gold sequences, summed over sentences, per labelled token.

    ``y_true [B, T]`` holds tag ids with ``ignore_label`` (-1) on positions outside
    the chain (continuation subwords, special tokens, padding); ``y_pred`` is the
    :class:`CRF` layer's output. Dividing by the labelled tokens keeps the loss on the
    scale of the softmax tagger's per-token cross-entropy (same learning rates, same clipping).
    The layer is not serialized: compile a loaded model again with ``CRFLoss(find_crf(model))``.
    The loss keeps only the layer's bound ``log_likelihood``: an attribute holding the layer
    itself would make Keras' ``model.save`` file the layer's weights under ``loss/`` (it walks
    the compiled loss before the layers) and ``load_model`` would then find none for the layer.
    """

    def __init__(self, crf: CRF | None = None, ignore_label: int = IGNORE_LABEL, name: str = "crf_negative_log_likelihood", **kwargs):
        super().__init__(name=name, **kwargs)
        self._log_likelihood = crf.log_likelihood if crf is not None else None
        self.ignore_label = int(ignore_label)

    def call(self, y_true, y_pred):
        if self._log_likelihood is None:
            raise ValueError("CRFLoss has no CRF layer: construct it as CRFLoss(find_crf(model))")
        y_true = tf.cast(y_true, tf.int32)
        mask = tf.not_equal(y_true, self.ignore_label)
        nll = -self._log_likelihood(log_probabilities(y_pred), tf.where(mask, y_true, 0), mask)
        return tf.reduce_sum(nll) / tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32)), 1.0)

    def get_config(self):
        return {**super().get_config(), "ignore_label": self.ignore_label}


def find_crf(model) -> CRF | None:
    """The :class:`CRF` layer of ``model`` (searched through nested models and TF-MOT wrappers), or None."""
    if model is None:
        return None
    if isinstance(model, CRF):
        return model
    for module in getattr(model, "submodules", ()):
        if isinstance(module, CRF):
            return module
    return None
