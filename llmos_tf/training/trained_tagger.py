"""A finished NER run loaded back: tag sentences, list their entities, evaluate on CoNLL files.

Sentences are strings of whitespace-separated tokens (the same contract as the
exported ``serving_default`` signature); each token gets one tag. Tokens that
do not fit in the run's ``max_length`` subwords are tagged ``O``.

Example::

    tagger = TrainedTagger.load("runs/sample_ner")
    tagger.predict_tags(["Anna Berg joined Acme Corp in Oslo ."])
    # [['B-PER', 'I-PER', 'O', 'B-ORG', 'I-ORG', 'O', 'B-LOC', 'O']]
    tagger.predict(["Anna Berg joined Acme Corp in Oslo ."]).loc[0, "entities"]
    # [{'type': 'PER', 'text': 'Anna Berg', 'start': 0, 'end': 2}, ...]
    tagger.evaluate("data/sample/ner_valid.conll")["entity_f1"]
"""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from llmos_tf._tf import tf, tf_keras
from llmos_tf.config import RunConfig, load_config
from llmos_tf.data.conll import OUTSIDE_TAG, read_conll
from llmos_tf.data.labels import LabelMap
from llmos_tf.errors import DataError, RunError
from llmos_tf.text.alignment import split_words
from llmos_tf.training import artifacts
from llmos_tf.training.conlleval import conlleval, entity_spans
from llmos_tf.training.tagging import NER_TASK, WordTagPredictor, tagger_text_encoder

CONLL_SUFFIXES = (".conll", ".conllu", ".iob", ".iob2", ".bio", ".ner")


def is_tagger_run(run_dir: str | pathlib.Path) -> bool:
    """True when ``run_dir`` is a finished run of ``task: ner`` (reads ``run.json`` only)."""
    path = pathlib.Path(run_dir) / artifacts.RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("task") == NER_TASK
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class TrainedTagger:
    run_dir: pathlib.Path
    config: RunConfig
    model: tf_keras.Model
    vocabulary: list[str]
    labels: LabelMap
    info: dict[str, Any]
    _predictor: WordTagPredictor | None = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: str | pathlib.Path) -> "TrainedTagger":
        from llmos_tf.text.wordpiece import load_vocabulary
        import llmos_tf.models.bert  # noqa: F401  (registers custom layers)
        import llmos_tf.models.crf  # noqa: F401
        import llmos_tf.models.heads  # noqa: F401
        import llmos_tf.models.layers  # noqa: F401

        run_dir = pathlib.Path(run_dir)
        info = artifacts.read_run_info(run_dir)
        if info.get("task") != NER_TASK:
            raise RunError(f"{run_dir}: a {info.get('task', 'classification')!r} run, not an NER tagger (task 'ner')")
        config = load_config(run_dir / artifacts.CONFIG_FILE)
        model_path = run_dir / artifacts.MODEL_FILE
        if not model_path.is_file():
            raise RunError(f"{run_dir}: {artifacts.MODEL_FILE} is missing; the run folder is incomplete")
        try:
            model = tf_keras.models.load_model(model_path, compile=False)
        except (OSError, ValueError) as err:
            raise RunError(f"{model_path}: cannot load the model ({err})") from None
        return cls(run_dir=run_dir, config=config, model=model, vocabulary=load_vocabulary(run_dir / artifacts.VOCAB_FILE),
                   labels=LabelMap.load(run_dir / artifacts.LABELS_FILE), info=info)

    # -- pieces --------------------------------------------------------------
    @property
    def model_config(self):
        from llmos_tf.models import registry

        return registry.model_config(self.config.model)

    @property
    def max_length(self) -> int:
        if "max_length" in self.info:
            return int(self.info["max_length"])
        from llmos_tf.models import registry

        return registry.get(self.config.architecture).max_length(self.model_config, self.config.data.max_length)

    @property
    def outside_id(self) -> int:
        return self.labels.names.index(OUTSIDE_TAG) if OUTSIDE_TAG in self.labels else 0

    def text_encoder(self):
        """The run's :class:`BertTextEncoder` (also saved inside exports)."""
        return tagger_text_encoder(self.model_config, self.vocabulary, self.config.text, self.max_length)

    @property
    def crf(self):
        """The model's :class:`~llmos_tf.models.crf.CRF` layer (Viterbi decoding), or None for a softmax tagger."""
        from llmos_tf.models.crf import find_crf

        return find_crf(self.model)

    @property
    def predictor(self) -> WordTagPredictor:
        if self._predictor is None:
            self._predictor = WordTagPredictor(self.text_encoder(), self.model, outside_id=self.outside_id)
        return self._predictor

    # -- inference -------------------------------------------------------------
    @staticmethod
    def split(sentences: Sequence[str]) -> tf.RaggedTensor:
        """Sentences → whitespace tokens, exactly as the serving signature splits them."""
        return split_words(tf.constant([str(s) for s in sentences], dtype=tf.string, shape=[len(sentences)]))

    def predict_tags(self, sentences: Sequence[str]) -> list[list[str]]:
        """One tag per whitespace token of every sentence."""
        if not len(sentences):
            return []
        return self.predictor.predict_tags(self.split(sentences), self.labels.names)

    def predict(self, sentences: Sequence[str]) -> pd.DataFrame:
        """One row per sentence: ``text``, ``tokens``, ``tags`` and ``entities``
        (``[{type, text, start, end}]``, token offsets, ``end`` exclusive)."""
        sentences = [str(s) for s in sentences]
        words = [[w.decode("utf-8") for w in row] for row in self.split(sentences).to_list()] if sentences else []
        tags = self.predictor.predict_tags(words, self.labels.names) if sentences else []
        entities = [
            [{"type": t, "text": " ".join(tokens[s:e]), "start": s, "end": e} for t, s, e in entity_spans(row)]
            for tokens, row in zip(words, tags)
        ]
        return pd.DataFrame({"text": sentences, "tokens": words, "tags": tags, "entities": entities})

    def evaluate(self, data: str | pathlib.Path | pd.DataFrame) -> dict[str, Any]:
        """conlleval metrics (overall and per entity type) on a CoNLL file or a :func:`read_conll` frame."""
        frame = data if isinstance(data, pd.DataFrame) else read_conll(data)
        predicted = self.predictor.predict_tags(frame["tokens"].tolist(), self.labels.names)
        return {"examples": len(frame), **conlleval(frame["tags"].tolist(), predicted)}

    def read_unlabelled(self, path: str | pathlib.Path) -> list[str]:
        """Sentences to tag: a CoNLL file (tokens joined by spaces) or a text file, one sentence per line."""
        path = pathlib.Path(path)
        if path.suffix.lower() in CONLL_SUFFIXES:
            return [" ".join(tokens) for tokens in read_conll(path)["tokens"]]
        from llmos_tf.data.readers import read_utf8_text

        sentences = [line.strip() for line in read_utf8_text(path).splitlines() if line.strip()]
        if not sentences:
            raise DataError(f"{path}: no sentences (expected one sentence per line)")
        return sentences
