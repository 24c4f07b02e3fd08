"""The newcomer's path (issue #15): a quiet start, errors that name the fix, exports that predict,
help that explains every flag, tables that fit the terminal.

The subprocess tests run the real ``llmos`` command, because what they check -- what TensorFlow
prints on stderr, whether TensorFlow was imported at all -- is a property of a fresh process.
They use the committed ``saved_models/banking77_bilstm/1`` (small, trained on Banking77).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from llmos_tf.cli import build_parser, main, resolve_model, train_summary_rows
from llmos_tf.config import config_from_dict, load_config
from llmos_tf.data.readers import read_labelled_table
from llmos_tf.display import fit_table
from llmos_tf.errors import ConfigError, DataError, MissingColumnError, RunError

REPO = pathlib.Path(__file__).resolve().parents[1]
EXPORT = REPO / "saved_models" / "banking77_bilstm" / "1"
LABELS = (EXPORT / "assets" / "labels.txt").read_text(encoding="utf-8").split()
# what TensorFlow prints when it starts on a CPU machine (issue #15 measured seven such lines)
TF_NOISE = re.compile(r"absl::InitializeLog|oneDNN|cuInit|cuda|cpu_feature_guard|^[IWEF]\d{4} ", re.MULTILINE | re.IGNORECASE)


def _llmos() -> list[str]:
    script = pathlib.Path(sys.executable).parent / "llmos"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "llmos_tf.cli"]


def _quiet_env(**extra: str) -> dict[str, str]:
    """The user's environment as a newcomer has it: no TF_CPP_MIN_LOG_LEVEL of their own."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(extra)
    return env


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


# -- 1. quiet by default ---------------------------------------------------------
def test_predict_on_an_export_prints_no_tensorflow_startup_noise():
    """A real `llmos predict` (which imports TensorFlow and loads a SavedModel) leaves stderr empty but
    for its own warning about the empty text; with --verbose, TensorFlow's logs are back."""
    words = [*_llmos(), "predict", "--model", str(EXPORT), "I lost my card", ""]
    quiet = subprocess.run(words, cwd=REPO, env=_quiet_env(COLUMNS="100"), capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert not TF_NOISE.search(quiet.stderr), quiet.stderr
    assert quiet.stderr.strip().splitlines() == [
        "warning: text 2 of 2 is empty (or only spaces): the model answers anyway, from no words at all, so that label means nothing"
    ]
    rows = quiet.stdout.strip().splitlines()
    assert rows[0].split() == ["text", "label", "probability"] and rows[1].split()[-2] in LABELS

    verbose = subprocess.run([*words[:2], "--verbose", *words[2:]], cwd=REPO, env=_quiet_env(), capture_output=True, text=True, timeout=300)
    assert verbose.returncode == 0 and TF_NOISE.search(verbose.stderr), "--verbose should let TensorFlow speak"


# -- 1. validation before TensorFlow ------------------------------------------------
def test_typos_and_wrong_flags_are_reported_by_a_process_that_never_imported_tensorflow(tmp_path):
    config = _write(tmp_path / "run.yaml", f"""
        name: typo
        output_dir: {tmp_path / 'runs'}
        data:
          train: {tmp_path / 'train.csv'}
        model:
          architecture: bilstm
          lstm_units: 16
        """)
    _write(tmp_path / "reviews.csv", "review,stars\na long review of a film,5\nanother long review,1\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    (tmp_path / "run" / "model.keras").write_text("")
    calls = [
        ["train", str(config), "--set", "model.lstm_unitz=32"],
        ["evaluate", "--model", str(EXPORT), "--data", str(tmp_path / "reviews.csv")],
        ["predict", "--model", str(tmp_path / "run" / "model.keras"), "hi"],
        ["serve", "--model_base_path", str(tmp_path / "nope")],
        ["doctor", str(config), "--set", "data.tpu_mod=true"],
    ]
    script = textwrap.dedent(f"""
        import sys
        from llmos_tf.cli import main
        codes = [main(argv) for argv in {calls!r}]
        print(codes, 'tensorflow' in sys.modules)
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_quiet_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[2,", "2,", "2,", "2,", "2]", "False"]
    errors = done.stderr.strip().splitlines()
    assert errors[0].startswith("error: --set model.lstm_unitz=32: unknown config key 'model.lstm_unitz' (did you mean 'lstm_units'?)")
    assert "run.yaml" not in errors[0]  # the file is fine; the --set is wrong
    assert errors[1].endswith("no text column: looked for 'text' or 'sentence'; the file has columns: review, stars; pass --text_column review")
    assert f"pass the run folder: --model {tmp_path / 'run'}" in errors[2]
    assert errors[3].startswith("error: --model_base_path: ") and "not a folder" in errors[3]
    assert errors[4].startswith("error: --set data.tpu_mod=true: unknown config key 'data.tpu_mod' (did you mean 'tpu_mode'?)")


# -- 2. errors that name the flag and the fix -------------------------------------------
@pytest.mark.parametrize(
    "override, starts, hint",
    [
        ("training.epoch=3", "--set training.epoch=3: unknown config key 'training.epoch'", "(did you mean 'epochs'?)"),
        ("trainin.epochs=3", "--set trainin.epochs=3: unknown config key 'trainin'", "(did you mean 'training'?)"),
        ("model.architecture=bertt", "--set model.architecture=bertt: model.architecture: unknown architecture 'bertt'", "(did you mean 'bert'?)"),
        ("training.epochs=0", "--set training.epochs=0: training.epochs: expected at least 1", ""),
    ],
)
def test_override_errors_blame_the_override_and_suggest(override, starts, hint):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"name": "x"}, [override])
    assert str(err.value).startswith(starts) and hint in str(err.value)
    assert err.value.override == override


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"name": "x"}, ["training.zzzz=1"])
    assert "did you mean" not in str(err.value) and "valid keys in training: epochs" in str(err.value)


def test_yaml_typo_is_blamed_on_the_file_and_its_line(tmp_path):
    path = _write(tmp_path / "run.yaml", """
        name: x
        training:
          epochs: 2
          learning_rat: 0.01
        """)
    with pytest.raises(ConfigError) as err:
        load_config(path, ["training.epochs=3"])  # a valid --set must not take the blame
    assert str(err.value).startswith(f"{path}, line 4: unknown config key 'training.learning_rat' (did you mean 'learning_rate'?)")


def test_missing_columns_name_the_file_the_columns_and_the_setting(tmp_path):
    path = _write(tmp_path / "reviews.csv", "id,review,stars\n1,a long and moving film,5\n2,dull and far too long,1\n3,fine,5\n")
    with pytest.raises(MissingColumnError) as err:
        read_labelled_table(path)
    assert str(err.value) == (f"{path}: no text column: looked for 'text' or 'sentence'; the file has columns: id, review, stars; "
                              "set it with --set data.text_column=review")
    with pytest.raises(MissingColumnError) as err:
        read_labelled_table(path, text_column="review")
    assert str(err.value).endswith("the file has columns: id, review, stars; set it with --set data.label_column=stars")


def test_train_names_the_column_setting(tmp_path, capsys):
    _write(tmp_path / "reviews.csv", "review,stars\n" + "".join(f"review number {i} of a film,{i % 2}\n" for i in range(20)))
    config = _write(tmp_path / "run.yaml", f"""
        name: cols
        output_dir: {tmp_path / 'runs'}
        data:
          train: {tmp_path / 'reviews.csv'}
        """)
    assert main(["train", str(config)]) == 2
    assert "the file has columns: review, stars; set it with --set data.text_column=review" in capsys.readouterr().err
    assert main(["train", str(config), "--text_column", "review"]) == 2  # the flag is a shortcut for the same key
    assert "set it with --set data.label_column=stars" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "cols").exists()


def test_model_paths_explain_what_to_pass(tmp_path):
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "model.keras").write_text("")
    with pytest.raises(RunError, match=re.escape(f"that is a file inside the run {run}; pass the run folder: --model {run}")):
        resolve_model(str(run / "model.keras"))
    with pytest.raises(RunError, match="add --server HOST:PORT"):
        resolve_model("banking77", for_server=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="neither a run folder .* nor an exported version"):
        resolve_model(str(tmp_path / "empty"))
    ref = resolve_model(str(EXPORT.parent))  # a model folder: its highest version, as TF Serving serves
    assert ref.kind == "savedmodel" and ref.path == EXPORT and ref.task == "classification"


# -- 2. predict and evaluate on an export -------------------------------------------------
def test_predict_and_evaluate_on_an_export(tmp_path, capsys, monkeypatch):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    texts = ["I lost my card yesterday", "why was my card payment declined", "how do I activate my new card",
             "can I get a refund for this purchase", "what is the exchange rate"]
    assert main(["predict", "--model", str(EXPORT), "--json", *texts]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # the same answers as the SavedModel's serving_default called directly (what TF Serving returns)
    direct = tf.saved_model.load(str(EXPORT)).signatures["serving_default"](text=tf.constant(texts))
    assert [r["label"] for r in rows] == [x.decode() for x in direct["label"].numpy()]
    assert [r["probability"] for r in rows] == pytest.approx(direct["probabilities"].numpy().max(axis=1).tolist(), abs=1e-6)

    gold = ["lost_or_stolen_card", "declined_card_payment", "activate_my_card", "request_refund", "exchange_rate"]
    data = tmp_path / "eval.csv"
    data.write_text("query,intent\n" + "".join(f"{t},{g}\n" for t, g in zip(texts, gold)), encoding="utf-8")
    assert main(["evaluate", "--model", str(EXPORT.parent), "--data", str(data), "--text_column", "query",
                 "--label_column", "intent", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 5 and metrics["labels"] == LABELS
    assert metrics["accuracy"] == pytest.approx(sum(r["label"] == g for r, g in zip(rows, gold)) / 5)

    assert main(["evaluate", "--model", str(EXPORT), "--data", str(data), "--text_column", "query"]) == 2
    assert capsys.readouterr().err.strip().endswith("the file has columns: query, intent; pass --label_column intent")

    monkeypatch.setenv("COLUMNS", "60")
    long = "my card payment was declined again and again at the same shop " * 4
    assert main(["predict", "--model", str(EXPORT), long, "I lost my card"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 60 for line in table) and table[1].startswith("my card payment") and table[1].split()[-2] in LABELS
    assert "\u2026" in table[1] and table[2].startswith("I lost my card ")


# -- 5. hints, help, warnings, tables --------------------------------------------------------
def test_every_flag_of_every_subcommand_is_described_with_its_default():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    expected = {"train", "evaluate", "predict", "sample-data", "doctor", "pretrain", "export", "compress", "distill", "serve", "tensorboard"}
    assert expected <= set(sub.choices)
    for name, command in sub.choices.items():
        text = " ".join(command.format_help().split())
        assert command.description, name
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            words = re.sub(r"\(?default[^)]*\)?", "", action.help or "", flags=re.IGNORECASE).split()
            assert len(words) >= 3, f"llmos {name} {action.option_strings or action.dest}: no description ({action.help!r})"
            if action.option_strings:
                rendered = " ".join(command.formatter_class(name)._get_help_string(action).split())
                assert "default" in rendered.lower() or "(required)" in rendered, f"llmos {name} {action.option_strings[0]}: {rendered!r}"
                assert rendered.split("(default")[0].strip() in text or rendered[:30] in text
    tensorboard = " ".join(sub.choices["tensorboard"].format_help().split())
    assert "--port PORT port TensorBoard listens on (default: 6006)" in tensorboard


def test_training_hint_is_a_command_that_works():
    result = SimpleNamespace(run_dir=pathlib.Path("/tmp/my runs/tiny"), metrics={"validation": {"accuracy": 0.9, "macro_f1": 0.8}},
                             info={"task": "classification", "wall_time_seconds": 1.0})
    hint = dict(train_summary_rows(result))["tensorboard"]
    assert hint == "llmos tensorboard --logdir '/tmp/my runs'"
    words = shlex.split(hint)
    args = build_parser().parse_args(words[1:])
    assert args.command == "tensorboard" and args.logdir == "/tmp/my runs"


def test_empty_texts_are_warned_about(capsys):
    from llmos_tf.cli import _gather_texts

    args = SimpleNamespace(texts=["a fine film", "   ", ""], data=None, text_column=None)
    assert _gather_texts(args, None) == ["a fine film", "   ", ""]
    assert capsys.readouterr().err == ("warning: text 2, 3 of 3 are empty (or only spaces): the model answers anyway, "
                                       "from no words at all, so that label means nothing\n")
    _gather_texts(SimpleNamespace(texts=["fine"], data=None, text_column=None), None)
    assert capsys.readouterr().err == ""


def test_tables_fit_the_width_and_cut_long_texts():
    import pandas as pd

    frame = pd.DataFrame({"text": ["short", "x" * 300, "two\nlines"], "label": ["positive", "negative", "positive"],
                          "probability": [0.5, 0.99, 0.7]})
    lines = fit_table(frame, width=50).splitlines()
    assert max(len(line) for line in lines) == 50
    assert lines[1].startswith("short ") and lines[2].startswith("x" * 20) and "\u2026" in lines[2]
    assert lines[3].startswith("two lines ")  # one row per text, whatever it holds
    assert lines[2].endswith("negative        0.990")
    wide = fit_table(frame.iloc[[0]], width=200).splitlines()
    assert wide == ["text   label     probability", "short  positive        0.500"]  # nothing padded to a distant column


def test_api_predict_warns_about_empty_texts(trained_run):
    import warnings

    import llmos_tf

    run = llmos_tf.load_run(trained_run)
    with pytest.warns(UserWarning, match=r"position 1 are empty"):
        frame = run.predict(["a lovely film", " "])
    assert len(frame) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.predict(["a lovely film"])


class _FakeServable:
    """A servable answering 'positive' for texts with 'good', for the label bookkeeping of LocalSavedModel."""

    def __init__(self, card):
        self.card = card
        self.path = pathlib.Path("fake/1")
        self.outputs = {"serving_default": {"probabilities": None, "label": None, "class_id": None}}

    def labels_for(self, signature):
        return ["negative", "positive"]

    def run(self, signature, inputs):
        import numpy as np

        good = np.array([b"good" in t for t in inputs["text"]])
        return {"probabilities": np.stack([~good, good], axis=1).astype("float32"),
                "label": np.where(good, b"positive", b"negative")}


@pytest.mark.parametrize("card", [{"label_names": {"0": "negative", "1": "positive"}},
                                  {"heads": {"sentiment": {"label_names": {"0": "negative", "1": "positive"}}}}])
def test_export_evaluation_reads_label_values_through_the_cards_names(tmp_path, card):
    from llmos_tf.serving.local import LocalSavedModel

    data = tmp_path / "sst.tsv"
    data.write_text("sentence\tlabel\na good film\t1\na bad film\t0\ngood grief\t0\n", encoding="utf-8")
    model = LocalSavedModel(_FakeServable(card))
    metrics = model.evaluate_table(read_labelled_table(data))
    assert metrics["examples"] == 3 and metrics["accuracy"] == pytest.approx(2 / 3) and metrics["labels"] == ["negative", "positive"]
    with pytest.raises(DataError, match=r"sst.tsv, line 2: label '1' was never seen"):  # no names: the values are unknown
        LocalSavedModel(_FakeServable({})).evaluate_table(read_labelled_table(data))


def test_predict_and_evaluate_on_a_tagger_export(tmp_path, capsys):
    """conll03_ner's serving_default returns tags and token_count: predict prints a tag per word, evaluate reads CoNLL."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    export = REPO / "saved_models" / "conll03_ner" / "1"
    sentences = ["EU rejects German call to boycott British lamb .", "Peter Blackburn"]
    assert main(["predict", "--model", str(export), "--json", *sentences]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    direct = tf.saved_model.load(str(export)).signatures["serving_default"](text=tf.constant(sentences))
    for row, tags, count in zip(rows, direct["tags"].numpy(), direct["token_count"].numpy()):
        assert row["tokens"] == row["text"].split() and row["tags"] == [t.decode() for t in tags[:count]]
    data = _write(tmp_path / "gold.conll", "".join(f"{w} {t}\n" for w, t in zip(rows[0]["tokens"], rows[0]["tags"])) + "\n")
    assert main(["evaluate", "--model", str(export), "--data", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 1 and metrics["token_accuracy"] == 1.0  # gold = its own tags
    assert main(["evaluate", "--model", str(export), "--data", str(data), "--text_column", "x"]) == 2
    assert "is a tagger; it reads CoNLL files" in capsys.readouterr().err
