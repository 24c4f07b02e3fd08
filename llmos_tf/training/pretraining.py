"""``llmos pretrain``: masked-language-model pretraining of a BERT encoder, run by the one trainer.

:func:`pretrain` builds the :class:`~llmos_tf.tasks.pretraining.PretrainingTask`
for the settings, runs it through :func:`llmos_tf.training.loop.fit` (run folder,
resume, TensorBoard, best checkpoint, mixed precision, ``--profile``,
``run.json``) and exports the run as the encoder folder ``settings.output``
(``model: {encoder: <that folder>}`` fine-tunes it with ``llmos train``).
The corpus, masking and model live in :mod:`llmos_tf.tasks.pretraining`.

Example::

    from llmos_tf.training.pretraining import PretrainConfig, pretrain
    summary = pretrain(PretrainConfig(corpus=["data/sample/corpus.txt"], output="encoders/tiny"))
    summary["losses"]        # mean MLM loss per epoch
"""
from __future__ import annotations

import logging
from typing import Any

from llmos_tf.tasks.pretraining import PRETRAIN_FILE, PretrainingTask, export_encoder  # noqa: F401  (PRETRAIN_FILE: part of the API)
from llmos_tf.training.loop import fit
from llmos_tf.training.pretrain_config import PretrainConfig

log = logging.getLogger(__name__)


def pretrain(config: PretrainConfig, *, verbose: int = 0, overwrite: bool = False, strategy: str = "auto", profile: str | None = None,
             command: str | None = None) -> dict[str, Any]:
    """Train the encoder (resuming an unfinished run folder of the same settings), write the encoder folder
    and return its ``pretrain.json`` summary; ``overwrite`` replaces a finished run folder."""
    result = fit(PretrainingTask(config), overwrite=overwrite, strategy=strategy, verbose=verbose, profile=profile, command=command)
    summary = export_encoder(result.run_dir, config.output)
    log.info("pretrained encoder written to %s (loss %s -> %s)", config.output, summary["first_loss"], summary["last_loss"])
    return summary
