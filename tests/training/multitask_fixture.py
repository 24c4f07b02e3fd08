"""A tiny multitask run (1-layer 32-wide BERT from scratch): a sentiment head and an NER head.

Shared by the multitask training and export tests; each trains it once (about 30 s on 2 CPUs).
"""
from __future__ import annotations

import pathlib

import yaml

from llmos_tf.data.sample import write_sample_data


def tiny_multitask_config(root: pathlib.Path, paths: dict[str, pathlib.Path], name: str = "mt_ner", epochs: int = 4) -> dict:
    return {
        "name": name,
        "task": "multitask",
        "seed": 3,
        "output_dir": str(root / "runs"),
        "data": {"max_length": 32, "validation_fraction": 0.2, "bucket_boundaries": [8, 16, 24]},
        "text": {"vocabulary_size": 500},
        "model": {"architecture": "bert", "encoder": None, "num_layers": 1, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64, "dropout": 0.0},
        "training": {"epochs": epochs, "batch_size": 16, "learning_rate": 0.003, "log_every_steps": 10, "backup_every_steps": 20,
                     "early_stopping_patience": 0, "monitor": "val_score"},
        "heads": [
            {"name": "sentiment", "train": str(paths["sentiment_train"])},
            {"name": "ner", "task": "ner", "train": str(paths["ner_train"]), "validation": str(paths["ner_valid"])},
        ],
    }


def train_tiny_multitask(root: pathlib.Path, name: str = "mt_ner") -> tuple[pathlib.Path, dict[str, pathlib.Path]]:
    """Write the sample data and train through ``llmos train``; returns (run folder, sample data paths)."""
    from llmos_tf.cli import main

    paths = write_sample_data(root / "data")
    config_path = root / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(tiny_multitask_config(root, paths, name)))
    assert main(["train", str(config_path)]) == 0
    return root / "runs" / name, paths
