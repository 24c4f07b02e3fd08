"""Settings of ``llmos pretrain`` (kept free of TensorFlow so ``llmos --help`` stays fast)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PretrainConfig:
    """What ``llmos pretrain`` does: its flags map one to one onto these fields."""

    corpus: list[str] = field(default_factory=list)  # text files, one passage per line
    output: str = "encoders/pretrained"  # llmos encoder folder to write (the run's export)
    run_dir: str | None = None  # the training run folder; None = runs/pretrain_<output folder name>
    encoder: str | None = None  # continue from a checkpoint spec; None = from scratch
    num_layers: int = 2
    hidden_dim: int = 128
    num_heads: int = 2
    intermediate_dim: int = 512
    vocabulary_size: int = 8000  # learnt from the corpus (from scratch only)
    max_length: int = 64
    mask_rate: float = 0.15
    batch_size: int = 32
    epochs: int = 1
    steps_per_epoch: int | None = None  # at most this many steps per epoch (None: one pass over the corpus)
    learning_rate: float = 5e-4
    seed: int = 42
    backup_every_steps: int = 200  # BackupAndRestore frequency (resume after kill -9), as training.backup_every_steps
    mixed_precision: str | None = None  # None/float32 | mixed_float16 | mixed_bfloat16, as training.mixed_precision

