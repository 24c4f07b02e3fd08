"""Masked-language-model (MLM) pretraining of the tf_keras BERT encoder on plain text.

The corpus is one or more UTF-8 text files, one passage per line (blank lines are
skipped). The encoder is either new (sizes from :class:`PretrainConfig`, WordPiece
vocabulary learnt from the corpus) or continued from a checkpoint spec
(``"minilm-l6"``, a keras-hub / Hugging Face folder, or a folder this module wrote).

Masking happens inside tf.data with keras-hub's ``MaskedLMMaskGenerator`` (BERT's
80/10/10 rule; ``[CLS]``, ``[SEP]`` and ``[PAD]`` are never selected), so every
epoch sees fresh masks. The MLM head gathers the encoder's ``sequence_output`` at
the masked positions → Dense(hidden, gelu) → LayerNorm → logits through the
(tied) token-embedding matrix plus a bias; the loss is sparse cross-entropy
averaged over the real masked positions (``mask_weights``).

The result is an *llmos encoder folder* (``encoder_config.json``,
``encoder.weights.h5``, ``vocabulary.txt``) plus ``pretrain.json``, written to a
temporary folder and renamed into place; ``model: {encoder: <that folder>}``
fine-tunes it with ``llmos train``.

Example::

    from llmos_tf.training.pretraining import PretrainConfig, pretrain
    summary = pretrain(PretrainConfig(corpus=["data/sample/corpus.txt"], output="encoders/tiny"))
    summary["losses"]        # mean MLM loss per epoch
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import shutil
import time
from typing import Any, Sequence

from llmos_tf._tf import tf, tf_keras
from llmos_tf.training.pretrain_config import PretrainConfig  # noqa: F401  (re-exported)
from llmos_tf.errors import ConfigError, DataError, RunError

log = logging.getLogger(__name__)

PRETRAIN_FILE = "pretrain.json"


def read_corpus(paths: Sequence[str | os.PathLike]) -> tuple[list[str], list[dict[str, Any]]]:
    """All non-blank lines of the corpus files, and one ``{path, lines, sha256}`` per file."""
    if not paths:
        raise DataError("pretraining needs at least one corpus file (--corpus FILE)")
    texts: list[str] = []
    files = []
    for path in map(pathlib.Path, paths):
        if not path.is_file():
            raise DataError(f"{path}: corpus file not found")
        try:
            raw = path.read_bytes()
            lines = [line.strip() for line in raw.decode("utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read corpus file as UTF-8 text ({exc})") from None
        lines = [line for line in lines if line]
        if not lines:
            raise DataError(f"{path}: corpus file is empty (expected one passage per line)")
        texts += lines
        files.append({"path": str(path), "lines": len(lines), "sha256": hashlib.sha256(raw).hexdigest()})
    return texts, files


def corpus_fingerprint(files: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f["sha256"].encode())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- masking / tf.data


def mask_selection_length(max_length: int, mask_rate: float) -> int:
    return max(1, math.ceil(max_length * mask_rate))


def make_mask_generator(vocabulary: Sequence[str], *, mask_rate: float, max_length: int):
    """keras-hub ``MaskedLMMaskGenerator`` for a BERT vocabulary ([CLS]/[SEP]/[PAD] unselectable)."""
    import keras_hub

    index = {t: i for i, t in enumerate(vocabulary)}
    missing = [t for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]") if t not in index]
    if missing:
        raise ConfigError(f"vocabulary lacks special token(s) {missing} needed for MLM pretraining")
    return keras_hub.layers.MaskedLMMaskGenerator(
        vocabulary_size=len(vocabulary),
        mask_selection_rate=mask_rate,
        mask_token_id=index["[MASK]"],
        mask_selection_length=mask_selection_length(max_length, mask_rate),
        unselectable_token_ids=[index["[CLS]"], index["[SEP]"], index["[PAD]"]],
    )


def mlm_dataset(texts: Sequence[str], text_encoder, generator, *, batch_size: int, max_length: int,
                seed: int, repeat: bool = False) -> tf.data.Dataset:
    """``(features, mask_ids, mask_weights)`` batches; features hold the masked token ids."""
    pad_id = text_encoder.pad_id

    @tf.autograph.experimental.do_not_convert
    def mask(batch_texts):
        ids = text_encoder(batch_texts, padded=False)["token_ids"]  # ragged [CLS] … [SEP]
        out = generator(ids)
        shape = [None, max_length]
        token_ids = tf.cast(out["token_ids"], tf.int32).to_tensor(default_value=pad_id, shape=shape)
        # from the unmasked ids: a random replacement token may be [PAD]
        padding_mask = tf.ones_like(ids, dtype=tf.int32).to_tensor(default_value=0, shape=shape)
        features = {
            "token_ids": token_ids,
            "padding_mask": padding_mask,
            "segment_ids": tf.zeros_like(token_ids),
            "mask_positions": tf.cast(out["mask_positions"], tf.int32),
        }
        return features, tf.cast(out["mask_ids"], tf.int32), tf.cast(out["mask_weights"], tf.float32)

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string))
    ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=len(texts) >= batch_size)
    return ds.map(mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- model


class MaskedLMPretrainer(tf_keras.Model):
    """Encoder + BERT MLM head with the output projection tied to the token embedding."""

    def __init__(self, encoder, **kwargs):
        kwargs.setdefault("name", "masked_lm_pretrainer")
        super().__init__(**kwargs)
        self.encoder = encoder
        init = tf_keras.initializers.TruncatedNormal(stddev=0.02)
        self.transform = tf_keras.layers.Dense(encoder.hidden_dim, activation="gelu",
                                               kernel_initializer=init, name="mlm_transform")
        self.norm = tf_keras.layers.LayerNormalization(epsilon=1e-12, name="mlm_layer_norm")
        self.output_bias = self.add_weight(name="mlm_output_bias", shape=[encoder.vocabulary_size],
                                           initializer="zeros", trainable=True)
        self.loss_tracker = tf_keras.metrics.Mean(name="loss")

    def call(self, inputs, training=None):
        features = {k: inputs[k] for k in ("token_ids", "padding_mask", "segment_ids")}
        sequence = self.encoder(features, training=training)["sequence_output"]
        gathered = tf.gather(sequence, inputs["mask_positions"], batch_dims=1)  # [B, M, H]
        hidden = self.norm(self.transform(gathered))
        table = self.encoder.embeddings.token_embedding.embeddings  # [V, H], tied
        return tf.matmul(hidden, table, transpose_b=True) + self.output_bias

    @staticmethod
    def masked_loss(mask_ids, logits, mask_weights):
        ce = tf_keras.losses.sparse_categorical_crossentropy(mask_ids, logits, from_logits=True)
        weights = tf.cast(mask_weights, ce.dtype)
        return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        x, mask_ids, mask_weights = data
        with tf.GradientTape() as tape:
            loss = self.masked_loss(mask_ids, self(x, training=True), mask_weights)
        # the pooler gets no gradient from MLM (no next-sentence task): leave it untouched
        variables = [v for v in self.trainable_variables if not v.name.startswith("pooler/")]
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x, mask_ids, mask_weights = data
        self.loss_tracker.update_state(self.masked_loss(mask_ids, self(x, training=False), mask_weights))
        return {"loss": self.loss_tracker.result()}


class _LossLog(tf_keras.callbacks.Callback):
    def __init__(self, every: int = 50):
        super().__init__()
        self.every = every
        self.steps = 0
        self.first_loss: float | None = None

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        loss = float((logs or {}).get("loss", float("nan")))
        if self.first_loss is None:
            self.first_loss = loss
        if self.steps % self.every == 0:
            log.info("pretrain step %d: loss %.4f", self.steps, loss)

    def on_epoch_end(self, epoch, logs=None):
        log.info("pretrain epoch %d: loss %.4f", epoch + 1, float((logs or {}).get("loss", float("nan"))))


# --------------------------------------------------------------------------- pretrain


def _check(cfg: PretrainConfig) -> None:
    if not 0.0 < cfg.mask_rate < 1.0:
        raise ConfigError(f"mask_rate={cfg.mask_rate}: must be between 0 and 1")
    for name in ("batch_size", "epochs", "max_length"):
        if int(getattr(cfg, name)) < 1:
            raise ConfigError(f"{name}={getattr(cfg, name)}: must be at least 1")
    if cfg.max_length < 3:
        raise ConfigError(f"max_length={cfg.max_length}: must be at least 3 ([CLS] token [SEP])")
    if cfg.steps_per_epoch is not None and cfg.steps_per_epoch < 1:
        raise ConfigError(f"steps_per_epoch={cfg.steps_per_epoch}: must be at least 1 (or unset)")
    if not cfg.output:
        raise ConfigError("output: an output folder is required")


def build_encoder(cfg: PretrainConfig, texts: Sequence[str]):
    """``(encoder, vocabulary, lowercase)``: from ``cfg.encoder`` or new from the sizes in ``cfg``."""
    if cfg.encoder:
        from llmos_tf.models.pretrained import load_pretrained_encoder

        encoder, vocabulary, info = load_pretrained_encoder(cfg.encoder)
        if cfg.max_length > encoder.max_sequence_length:
            raise ConfigError(f"max_length={cfg.max_length} exceeds encoder {cfg.encoder!r}'s "
                              f"{encoder.max_sequence_length} positions")
        return encoder, list(vocabulary), bool(info["lowercase"])
    from llmos_tf.models.bert_classifier import BERT_RESERVED_TOKENS
    from llmos_tf.models.pretrained import encoder_from_config
    from llmos_tf.text.wordpiece import learn_vocabulary

    vocabulary = learn_vocabulary(texts, cfg.vocabulary_size, lowercase=True, strip_accents=True,
                                  reserved_tokens=BERT_RESERVED_TOKENS)
    encoder = encoder_from_config({
        "vocabulary_size": len(vocabulary), "num_layers": cfg.num_layers, "hidden_dim": cfg.hidden_dim,
        "num_heads": cfg.num_heads, "intermediate_dim": cfg.intermediate_dim,
        "max_sequence_length": cfg.max_length,
    })
    return encoder, vocabulary, True


def build_pretrainer(encoder, learning_rate: float) -> MaskedLMPretrainer:
    model = MaskedLMPretrainer(encoder)
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=1.0))
    return model


def _replace_folder(tmp: pathlib.Path, output: pathlib.Path) -> None:
    """Rename ``tmp`` to ``output``; an existing encoder folder there is replaced."""
    from llmos_tf.models.pretrained import is_encoder_folder

    if output.exists():
        if output.is_file() or (any(output.iterdir()) and not is_encoder_folder(output)):
            shutil.rmtree(tmp, ignore_errors=True)
            raise RunError(f"{output}: exists and is not an encoder folder; choose another --output")
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        output.rename(old)
        tmp.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(output)


def pretrain(config: PretrainConfig, *, verbose: int = 0) -> dict[str, Any]:
    """Run MLM pretraining; writes the encoder folder and returns the ``pretrain.json`` summary."""
    from llmos_tf.models.pretrained import save_encoder
    from llmos_tf.text.bert_tokenizer import BertTextEncoder

    _check(config)
    texts, files = read_corpus(config.corpus)
    output = pathlib.Path(config.output)
    tf_keras.utils.set_random_seed(config.seed)
    started = time.time()

    encoder, vocabulary, lowercase = build_encoder(config, texts)
    text_encoder = BertTextEncoder(vocabulary, sequence_length=config.max_length, lowercase=lowercase,
                                   strip_accents=lowercase)
    generator = make_mask_generator(vocabulary, mask_rate=config.mask_rate, max_length=config.max_length)
    repeat = config.steps_per_epoch is not None
    ds = mlm_dataset(texts, text_encoder, generator, batch_size=config.batch_size,
                     max_length=config.max_length, seed=config.seed, repeat=repeat)
    model = build_pretrainer(encoder, config.learning_rate)
    logger = _LossLog()
    history = model.fit(ds, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
                        callbacks=[logger], verbose=verbose)
    losses = [float(x) for x in history.history.get("loss", [])]

    summary = {
        "losses": losses,
        "first_loss": logger.first_loss,
        "last_loss": losses[-1] if losses else None,
        "steps": logger.steps,
        "output": str(output),
        "config": dataclasses.asdict(config),
        "encoder_config": encoder.get_config(),
        "vocabulary_size": len(vocabulary),
        "lowercase": lowercase,
        "mask_selection_length": mask_selection_length(config.max_length, config.mask_rate),
        "corpus": files,
        "corpus_fingerprint": corpus_fingerprint(files),
        "num_passages": len(texts),
        "elapsed_seconds": round(time.time() - started, 2),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_encoder(encoder, tmp, vocabulary)
    (tmp / PRETRAIN_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _replace_folder(tmp, output)
    log.info("pretrained encoder written to %s (loss %s -> %s)", output, summary["first_loss"], summary["last_loss"])
    return summary
