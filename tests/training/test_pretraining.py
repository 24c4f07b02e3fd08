"""MLM pretraining: keras-hub masking, a learning MLM head, the CLI through the one trainer (run folder,
TensorBoard, run.json, fill-mask predictor), the encoder-folder export, and reuse by `llmos train`."""
from __future__ import annotations

import contextlib
import io
import json
import pathlib

import numpy as np
import pytest

from llmos_tf._tf import tf, tf_keras
from llmos_tf.errors import ConfigError, DataError, RunError
from llmos_tf.tasks.pretraining_data import make_mask_generator, mlm_dataset, read_corpus
from llmos_tf.tasks.pretraining_model import build_encoder, build_pretrainer
from llmos_tf.training.pretrain_config import PretrainConfig

TINY = dict(num_layers=1, hidden_dim=32, num_heads=2, intermediate_dim=64, vocabulary_size=300,
            max_length=24, batch_size=16, seed=7)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    from llmos_tf.data.sample import write_sample_data

    return write_sample_data(tmp_path_factory.mktemp("pretrain_data"))["corpus"]


@pytest.fixture(scope="module")
def setup(corpus):
    from llmos_tf.text.bert_tokenizer import BertTextEncoder

    cfg = PretrainConfig(corpus=[str(corpus)], output="unused", **TINY)
    texts, _ = read_corpus(cfg.corpus)
    tf_keras.utils.set_random_seed(cfg.seed)
    encoder, vocabulary, lowercase = build_encoder(cfg, texts)
    text_encoder = BertTextEncoder(vocabulary, sequence_length=cfg.max_length, lowercase=lowercase,
                                   strip_accents=lowercase)
    generator = make_mask_generator(vocabulary, mask_rate=cfg.mask_rate, max_length=cfg.max_length)
    ds = mlm_dataset(texts, text_encoder, generator, batch_size=cfg.batch_size,
                     max_length=cfg.max_length, seed=cfg.seed)
    return cfg, encoder, vocabulary, ds


def test_masks_come_from_keras_hub_generator(setup):
    import keras_hub

    cfg, _, vocabulary, ds = setup
    index = {t: i for i, t in enumerate(vocabulary)}
    generator = make_mask_generator(vocabulary, mask_rate=0.15, max_length=cfg.max_length)
    assert isinstance(generator, keras_hub.layers.MaskedLMMaskGenerator)
    x, mask_ids, weights = next(iter(ds))
    ids, positions = x["token_ids"].numpy(), x["mask_positions"].numpy()
    mask_ids, weights = mask_ids.numpy(), weights.numpy()
    assert ids.shape == (cfg.batch_size, cfg.max_length)
    assert positions.shape == mask_ids.shape == weights.shape == (cfg.batch_size, 4)  # ceil(24*0.15)
    assert (ids == index["[MASK]"]).sum() > 0
    selected = positions[weights > 0]
    rows = np.nonzero(weights > 0)[0]
    assert len(selected) > 0
    specials = {index["[CLS]"], index["[SEP]"], index["[PAD]"]}
    assert not set(mask_ids[weights > 0].tolist()) & specials  # originals never special tokens
    assert (selected > 0).all()  # position 0 is [CLS]
    pad = x["padding_mask"].numpy()
    assert (pad[rows, selected] == 1).all()  # only real tokens are selected
    masked_tokens = ids[rows, selected]
    assert (masked_tokens == index["[MASK]"]).mean() > 0.5  # 80/10/10 rule


def test_mlm_steps_lower_the_loss(setup):
    cfg, encoder, vocabulary, ds = setup
    batch = next(iter(ds))
    model = build_pretrainer(encoder, learning_rate=3e-3)
    x, y, w = batch
    before = float(model.masked_loss(y, model(x, training=False), w))
    assert abs(before - np.log(len(vocabulary))) < 1.5  # random init ~ log(V)
    fixed = tf.data.Dataset.from_tensors(batch).repeat(15)
    model.fit(fixed, epochs=1, verbose=0)
    after = float(model.masked_loss(y, model(x, training=False), w))
    assert after < before - 0.5, (before, after)


@pytest.fixture(scope="module")
def pretrained_folder(corpus, tmp_path_factory) -> pathlib.Path:
    from llmos_tf.cli import main

    out = tmp_path_factory.mktemp("enc") / "tiny_encoder"
    argv = ["pretrain", "--corpus", str(corpus), "--output", str(out), "--epochs", "2", "--steps_per_epoch", "4",
            "--run_dir", str(out.parent / "runs" / "pretrain_tiny")]
    for k, v in TINY.items():
        argv += [f"--{k}", str(v)]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(argv) == 0  # through the `llmos` command
    (out.parent / "stdout.txt").write_text(stdout.getvalue())
    return out


def test_cli_writes_loadable_encoder_folder(pretrained_folder):
    from llmos_tf.models.pretrained import load_encoder

    out = (pretrained_folder.parent / "stdout.txt").read_text()
    assert "first loss" in out and str(pretrained_folder) in out
    encoder, vocabulary = load_encoder(pretrained_folder)
    assert encoder.hidden_dim == 32 and encoder.num_layers == 1
    assert vocabulary[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert encoder.vocabulary_size == len(vocabulary)
    summary = json.loads((pretrained_folder / "pretrain.json").read_text())
    assert summary["steps"] == 8 and len(summary["losses"]) == 2
    assert summary["corpus_fingerprint"] and summary["config"]["hidden_dim"] == 32
    assert not list(pretrained_folder.parent.glob(".*tmp*"))
    assert summary["run_dir"] == str(pretrained_folder.parent / "runs" / "pretrain_tiny")


def test_pretraining_runs_through_the_one_trainer(pretrained_folder, corpus):
    """The run folder is a finished run like `llmos train`'s: run.json (task, optimizer steps, metrics of the
    restored best weights), TensorBoard scalars read back from the event files, and a fill-mask predictor."""
    from llmos_tf.models.pretrained import load_encoder
    from llmos_tf.tasks import load_trained, run_task
    from llmos_tf.tasks.pretraining import PretrainingTask, TrainedEncoder
    from llmos_tf.tensorboard_data import read_history

    run_dir = pretrained_folder.parent / "runs" / "pretrain_tiny"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["task"] == "pretraining" and info["optimizer_steps"] == 8 and info["epochs_run"] == 2
    assert info["monitor"]["name"] == "loss" and info["best_epoch"] in (1, 2)
    assert info["data"]["passages"] == 500 and info["data"]["corpus"][0]["path"] == str(corpus)
    summary = json.loads((pretrained_folder / "pretrain.json").read_text())
    assert summary["losses"] == pytest.approx(info["pretraining"]["losses"])
    assert summary["metrics"]["corpus"]["mlm_loss"] < np.log(summary["vocabulary_size"])  # below chance after 8 steps
    history = read_history(run_dir)  # TensorBoard event files
    assert list(history.index) == [1, 2] and history["loss"].tolist() == pytest.approx(summary["losses"], rel=1e-5)
    assert run_task(run_dir) is PretrainingTask
    trained = load_trained(run_dir)
    assert type(trained) is TrainedEncoder
    for a, b in zip(trained.model.encoder.weights, load_encoder(pretrained_folder)[0].weights):  # the export is the run's encoder
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    rows = trained.predict(["the film was [MASK] and the [MASK] was good", "no mask here"])
    assert list(rows.columns) == ["text", "predictions"]
    first, second = rows["predictions"]
    assert len(first) == 2 and all(t in trained.vocabulary for t in first) and second == []


def test_export_refuses_a_pretraining_run_and_names_the_encoder_route(pretrained_folder, tmp_path, capsys):
    """`llmos export --run` on a pretraining run says where its result is and how to publish it; nothing is written."""
    from llmos_tf.cli import main

    run_dir = pretrained_folder.parent / "runs" / "pretrain_tiny"
    base = tmp_path / "models"
    assert main(["export", "--run", str(run_dir), "--model_base_path", str(base), "--name", "tiny"]) != 0
    err = capsys.readouterr().err
    assert "pretraining run has no TF Serving export" in err and "llmos encode --model ENCODER_FOLDER" in err, err
    assert not base.exists() or not any(base.rglob("*"))


def test_pretraining_run_options_follow_the_trainer_rules(pretrained_folder, corpus, tmp_path, capsys):
    """Refused up front, by the same rules as every task: multi-worker (with the reason), a bad --profile, a finished
    run folder without --overwrite, an --output that is not an encoder folder; nothing is written."""
    from llmos_tf.cli import main
    from llmos_tf.tasks.pretraining import PretrainingTask
    from llmos_tf.training import loop
    from llmos_tf.training.pretraining import pretrain

    task = PretrainingTask(PretrainConfig(corpus=[str(corpus)], output=str(tmp_path / "enc")))
    with pytest.raises(RunError, match="--strategy multi_worker: the encoder folder is exported by the process that trains"):
        loop.check_run_options(task, strategy="multi_worker")
    with pytest.raises(ConfigError, match="--profile"):
        loop.check_run_options(task, profile="x")
    run_dir = str(pretrained_folder.parent / "runs" / "pretrain_tiny")
    with pytest.raises(RunError, match="finished run already exists; pass --overwrite"):
        pretrain(PretrainConfig(corpus=[str(corpus)], output=str(tmp_path / "enc"), run_dir=run_dir, **TINY), strategy="default")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    assert main(["pretrain", "--corpus", str(corpus), "--output", str(tmp_path / "notes"), "--run_dir", str(tmp_path / "run")]) == 2
    assert "notes: exists and is not an encoder folder; choose another --output" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"] and (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_mixed_precision_applies_to_a_pretraining_run(corpus, tmp_path):
    """``--mixed_precision`` takes effect as for `llmos train`: the encoder computes in bfloat16 while training
    (read back from model.keras), the MLM logits stay float32, and the global policy is restored."""
    from llmos_tf.tasks import load_trained
    from llmos_tf.training.pretraining import pretrain

    settings = PretrainConfig(corpus=[str(corpus)], output=str(tmp_path / "enc"), run_dir=str(tmp_path / "run"), epochs=1,
                              steps_per_epoch=2, mixed_precision="mixed_bfloat16", **TINY)
    summary = pretrain(settings, strategy="default")
    assert tf_keras.mixed_precision.global_policy().name == "float32"
    assert summary["steps"] == 2 and np.isfinite(summary["last_loss"])
    model = load_trained(tmp_path / "run").model
    assert model.dtype_policy.name == "mixed_bfloat16" and model.get_layer("mlm_transform").compute_dtype == "bfloat16"
    assert model.encoder.get_layer("transformer_layer_0").compute_dtype == "bfloat16"
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # loading restores it too
    ids = tf.constant([[2, 4, 3]], tf.int32)  # [CLS] [MASK] [SEP]
    logits = model({"token_ids": ids, "padding_mask": tf.ones_like(ids), "segment_ids": tf.zeros_like(ids), "mask_positions": tf.constant([[1]])})
    assert logits.dtype == tf.float32 and logits.shape == (1, 1, len(load_trained(tmp_path / "run").vocabulary))


def test_folder_works_as_classifier_encoder(pretrained_folder):
    from llmos_tf.models.bert_classifier import (
        BertClassifierConfig, _encoder, bert_vocabulary, effective_max_length)
    from llmos_tf.models.pretrained import load_encoder

    cfg = BertClassifierConfig(encoder=str(pretrained_folder), dropout=0.0)
    vocabulary = bert_vocabulary(cfg, ["ignored"], text_cfg=None)
    saved, saved_vocab = load_encoder(pretrained_folder)
    assert vocabulary == saved_vocab
    encoder = _encoder(cfg, vocabulary, max_length=16)
    assert encoder.dropout == 0.0
    for a, b in zip(encoder.weights, saved.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.warns(UserWarning):
        assert effective_max_length(cfg, 128) == TINY["max_length"]


def test_missing_corpus_names_the_file(tmp_path):
    from llmos_tf.training.pretraining import pretrain

    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match="nope.txt"):
        pretrain(PretrainConfig(corpus=[str(missing)], output=str(tmp_path / "out"), run_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()  # refused before the run folder is created
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(DataError, match="empty.txt"):
        read_corpus([empty])


def test_pretraining_resumes_after_kill_9(corpus, tmp_path):
    """kill -9 mid-run, run the same `llmos pretrain` again: it resumes from the backup (as `llmos train` does), ends at
    the planned step count, and pretrain.json has every epoch's loss (from the TensorBoard event files)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dir, out = tmp_path / "run", tmp_path / "enc"
    cmd = [sys.executable, "-m", "llmos_tf.cli", "pretrain", "--corpus", str(corpus), "--output", str(out), "--run_dir", str(run_dir),
           "--epochs", "3", "--backup_every_steps", "5"]
    for k, v in {**TINY, "batch_size": 4}.items():
        cmd += [f"--{k}", str(v)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if (run_dir / "backup").is_dir() and any(p.suffix == ".index" for p in (run_dir / "backup").rglob("*")):
                break
            assert proc.poll() is None, "pretraining ended before a backup was written"
            time.sleep(0.2)
        else:
            raise AssertionError("no backup written within 240 s")
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (run_dir / "run.json").exists() and not out.exists()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["resumed"] is True and info["resumed_from_step"] > 0
    assert info["optimizer_steps"] == info["steps_per_epoch"] * 3 == (500 // 4) * 3
    summary = json.loads((out / "pretrain.json").read_text())
    assert len(summary["losses"]) == 3 and summary["first_loss"] is None  # the first batch ran in the killed process
    assert "epoch 1 mean; the run was resumed" in done.stdout

