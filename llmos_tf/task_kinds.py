"""What each task name means to the commands, as plain facts: no TensorFlow, no heavy imports.

A run's ``run.json`` and an export's model card (``assets/llmos.json``) record a ``task``;
the commands decide what to read, predict, explain or calibrate from the facts of its
:class:`TaskKind` instead of comparing task names. Much of that happens before TensorFlow
is imported (``llmos evaluate`` reads ``--data`` first, so that a wrong column answers at
once), which is why these facts are not read off the task classes of :mod:`llmos_tf.tasks`
(importing them imports TensorFlow). Each task class points at its kind (``Task.kind``) and
a test checks that the two tables agree; :mod:`llmos_tf.config`'s ``TASKS`` and
``HEAD_TASKS`` come from here.

============== =========== ========== ========= ========== ============ ==============
task           data_format predicts   explains  calibrates configurable multitask_head
============== =========== ========== ========= ========== ============ ==============
classification table       label      classes   yes        yes          yes
ner            conll       word_tags  entities  no         yes          yes
multitask      per_head    heads      --        no         yes          no
pretraining    text        tokens     --        no         no           no
============== =========== ========== ========= ========== ============ ==============

``sentence_embedding`` and ``semantic_search`` are the tasks of ``llmos compose``'s encoder and
search-index versions: only model cards name them (no run, no task class).

Example::

    from llmos_tf.task_kinds import task_kind
    if task_kind(ref.task).data_format == "conll":   # an NER run or export reads CoNLL files
        ...
"""
from __future__ import annotations

from dataclasses import dataclass

from llmos_tf.errors import ConfigError


@dataclass(frozen=True)
class TaskKind:
    """The facts commands branch on for one task name.

    * ``data_format`` – what its labelled and unlabelled files are: ``table`` (csv, tsv, jsonl, parquet
      with text/label columns), ``conll`` (a token and its tag per line), ``per_head`` (multitask: the
      head's task says) or ``text`` (a corpus, one text per line);
    * ``predicts`` – ``label`` (one per text), ``word_tags`` (one tag per whitespace word), ``heads`` (each
      head its own), ``tokens`` (the MLM's word per ``[MASK]``), ``embedding`` or ``neighbours``;
    * ``explains`` – what ``llmos explain`` / ``Run.explain`` attribute: ``classes`` (integrated gradients
      towards a class) or ``entities`` (per predicted entity); None when explain does not cover the task;
    * ``calibrates`` – whether temperature scaling (``llmos calibrate``) applies: classifiers only;
    * ``configurable`` – whether a run config's ``task:`` may name it (pretraining is built from
      ``llmos pretrain``'s flags);
    * ``multitask_head`` – whether a multitask run's ``heads[i].task`` may name it.
    """

    name: str
    data_format: str
    predicts: str
    explains: str | None = None
    calibrates: bool = False
    configurable: bool = False
    multitask_head: bool = False

    @property
    def has_heads(self) -> bool:
        """Whether predictions, metrics and files are per head (``--head``, ``heads:``)."""
        return self.predicts == "heads"


KINDS: tuple[TaskKind, ...] = (
    TaskKind("classification", data_format="table", predicts="label", explains="classes", calibrates=True, configurable=True,
             multitask_head=True),
    TaskKind("ner", data_format="conll", predicts="word_tags", explains="entities", configurable=True, multitask_head=True),
    TaskKind("multitask", data_format="per_head", predicts="heads", configurable=True),
    TaskKind("pretraining", data_format="text", predicts="tokens"),
    # model cards only (llmos compose): texts in, no labels out
    TaskKind("sentence_embedding", data_format="table", predicts="embedding"),
    TaskKind("semantic_search", data_format="table", predicts="neighbours"),
)
_BY_NAME = {kind.name: kind for kind in KINDS}
DEFAULT_TASK = "classification"  # runs and exports written before run.json / the model card recorded a task


def task_kind(name: str | None) -> TaskKind:
    """The kind of task ``name`` (None: a run or export that recorded no task, i.e. a classifier);
    a ConfigError naming the known tasks otherwise."""
    kind = _BY_NAME.get(DEFAULT_TASK if name is None else name)
    if kind is None:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(_BY_NAME)}")
    return kind
