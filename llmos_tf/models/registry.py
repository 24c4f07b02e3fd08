"""Registry of model architectures: name → (config schema, builder).

The ``model:`` section of a run config names an ``architecture``; its other
keys are checked against that architecture's dataclass, so ``--set
model.lstm_unitz=3`` fails with the valid keys listed. New architectures (BERT)
join by calling :func:`register`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from llmos_tf.errors import ConfigError
from llmos_tf.schema import build, did_you_mean


@dataclass
class BuildContext:
    """What a builder needs beyond its own hyperparameters."""

    num_labels: int
    vocabulary: list[str]
    task: str = "classification"
    max_length: int = 64


@dataclass(frozen=True)
class Architecture:
    """How one model family turns text into predictions.

    ``vocabulary(model_cfg, train_texts, text_cfg)`` learns or loads the vocabulary;
    ``tokenizer(model_cfg, vocabulary, text_cfg, max_length)`` returns a trackable
    callable mapping raw strings ``[B]`` to ragged int32 ids (it is saved inside the
    exported SavedModel); ``features(padded_ids)`` maps padded ids to the model's
    inputs (identity when None); ``build(model_cfg, context)`` returns the tf_keras model.
    For ``task: ner``, ``tagger(model_cfg, context)`` returns a token classifier
    over :func:`~llmos_tf.text.alignment.encode_words` inputs (None: the family
    cannot tag) and ``tagger_vocabulary`` the vocabulary it reads, which needs
    ``[CLS]``/``[SEP]`` (default: ``vocabulary``).
    """

    name: str
    config_cls: type
    build: Callable[[Any, BuildContext], Any]
    vocabulary: Callable[[Any, Sequence[str], Any], list[str]]
    tokenizer: Callable[[Any, Sequence[str], Any, int], Any]
    features: Callable[[Any], Any] | None = None
    max_length: Callable[[Any, int], int] = lambda cfg, n: n
    description: str = ""
    tagger: Callable[[Any, BuildContext], Any] | None = None
    tagger_vocabulary: Callable[[Any, Sequence[str], Any], list[str]] | None = None


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> None:
    _REGISTRY[arch.name] = arch


def names() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get(name: str) -> Architecture:
    _ensure_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"model.architecture: unknown architecture {name!r}; valid: {', '.join(names())}")
    return _REGISTRY[name]


def schema(name: str) -> type:
    """The ``model:`` dataclass of an architecture, without importing its builder (or TensorFlow).

    Validation runs before any work starts, so a typo in a config answers at once.
    """
    from llmos_tf.models.schemas import BUILTIN_SCHEMAS

    if name in _REGISTRY:
        return _REGISTRY[name].config_cls
    if name in BUILTIN_SCHEMAS:
        return BUILTIN_SCHEMAS[name]
    valid = sorted(set(BUILTIN_SCHEMAS) | set(_REGISTRY))
    raise ConfigError(f"model.architecture: unknown architecture {name!r}{did_you_mean(name, valid)}; valid: {', '.join(valid)}")


def validate_model_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``model:`` mapping against its architecture; return it with defaults filled in."""
    values = dict(values or {})
    name = str(values.get("architecture", "bilstm"))
    values["architecture"] = name
    cfg = build(schema(name), values, "model")  # the same checker as the rest of the config
    return dataclasses.asdict(cfg)


def taggers() -> list[str]:
    """Architectures that can build a ``task: ner`` token classifier."""
    return [name for name in names() if _REGISTRY[name].tagger is not None]


def model_config(values: Mapping[str, Any]) -> Any:
    """The architecture's dataclass for a (validated) ``model:`` mapping."""
    arch = get(str(values.get("architecture", "bilstm")))
    return arch.config_cls(**dict(values))


def _wordpiece_vocabulary(cfg, texts, text_cfg) -> list[str]:
    from llmos_tf.text.wordpiece import learn_vocabulary

    if getattr(cfg, "pretrained_embeddings", None):
        from llmos_tf.models.pretrained import _load_vocabulary, resolve_checkpoint

        return _load_vocabulary(resolve_checkpoint(cfg.pretrained_embeddings), cfg.pretrained_embeddings)[0]
    return learn_vocabulary(texts, text_cfg.vocabulary_size, lowercase=text_cfg.lowercase, strip_accents=text_cfg.strip_accents)


def _tagger_wordpiece_vocabulary(cfg, texts, text_cfg) -> list[str]:
    """The BiLSTM's vocabulary with BERT's reserved tokens: NER words are encoded between [CLS] and [SEP]."""
    if getattr(cfg, "pretrained_embeddings", None):
        return _wordpiece_vocabulary(cfg, texts, text_cfg)
    from llmos_tf.models.bert_classifier import BERT_RESERVED_TOKENS
    from llmos_tf.text.wordpiece import learn_vocabulary

    return learn_vocabulary(texts, text_cfg.vocabulary_size, lowercase=text_cfg.lowercase, strip_accents=text_cfg.strip_accents,
                            reserved_tokens=BERT_RESERVED_TOKENS)


def _wordpiece_tokenizer(cfg, vocabulary, text_cfg, max_length):
    from llmos_tf.text.wordpiece import make_tokenizer

    if getattr(cfg, "pretrained_embeddings", None):
        from llmos_tf.text.bert_tokenizer import detect_lowercase

        # the checkpoint's own casing and accent rules (BERT uncased strips accents too)
        lowercase = detect_lowercase(vocabulary)
        return make_tokenizer(vocabulary, lowercase=lowercase, strip_accents=lowercase)
    return make_tokenizer(vocabulary, lowercase=text_cfg.lowercase, strip_accents=text_cfg.strip_accents)


def _ensure_builtin() -> None:
    if "bilstm" in _REGISTRY:
        return
    from llmos_tf.models import bert_classifier as bert
    from llmos_tf.models import taggers
    from llmos_tf.models.bilstm import BiLSTMConfig, build_bilstm_classifier

    register(
        Architecture(
            name="bilstm",
            config_cls=BiLSTMConfig,
            build=lambda cfg, ctx: build_bilstm_classifier(cfg, vocabulary_size=len(ctx.vocabulary), num_labels=ctx.num_labels),
            vocabulary=_wordpiece_vocabulary,
            tokenizer=_wordpiece_tokenizer,
            description="masked embedding + bidirectional LSTM + max/mean pooling",
            tagger=lambda cfg, ctx: taggers.build_bilstm_tagger(cfg, vocabulary_size=len(ctx.vocabulary), num_tags=ctx.num_labels),
            tagger_vocabulary=_tagger_wordpiece_vocabulary,
        )
    )
    register(
        Architecture(
            name="bert",
            config_cls=bert.BertClassifierConfig,
            build=lambda cfg, ctx: bert.build_bert_classifier(cfg, ctx.vocabulary, ctx.num_labels, ctx.max_length),
            vocabulary=bert.bert_vocabulary,
            tokenizer=bert.BertTokenIds.for_run,
            features=bert.bert_features,
            max_length=bert.effective_max_length,
            description="BERT encoder (pretrained checkpoint or from scratch) + pooled softmax head",
            tagger=lambda cfg, ctx: taggers.build_bert_tagger(cfg, ctx.vocabulary, ctx.num_labels, ctx.max_length),
        )
    )
