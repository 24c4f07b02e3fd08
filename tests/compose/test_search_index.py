"""`llmos index`: the `search` signature is exact brute-force top-k, refuses bad input, and hot-reloads under a real server."""
from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pandas as pd
import pytest
from tensorflow_serving.apis import model_pb2, predict_pb2

from llmos_tf._tf import tf
from llmos_tf.cli import main
from tests.compose.conftest import load_in_plain_tf
from tests.conftest import make_sentiment_rows
from tests.serving.conftest import server_factory, stubs  # noqa: F401  (fixture)

QUERIES = ["the film was wonderful", "an awful and dull plot", "the soundtrack"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rows = make_sentiment_rows(40, seed=11)
    frame = pd.DataFrame({"question": [t for t, _ in rows], "answer": [f"answer {i} ({label})" for i, (_, label) in enumerate(rows)]})
    frame = frame.drop_duplicates("question").reset_index(drop=True)
    path = root / "faq.csv"
    frame.to_csv(path, index=False)
    return {"path": path, "frame": frame, "root": root}


@pytest.fixture(scope="module")
def index(exported, corpus):
    from llmos_tf.compose.search_index import build_index

    base = corpus["root"] / "models"
    assert main(["index", "--model", str(exported["bert"]), "--corpus", str(corpus["path"]), "--text_column", "question",
                 "--payload_column", "answer", "--name", "faq", "--model_base_path", str(base)]) == 0
    int8 = build_index(str(exported["bert"]), str(corpus["path"]), base, "faq_int8", text_column="question", dtype="int8")
    return {"base": base, "float32": base / "faq" / "1", "int8": int8}


def _reference(exported, corpus, queries, k):
    """Brute force in NumPy on the vectors the model's own `encode` signature gives."""
    encode = tf.saved_model.load(str(exported["bert"])).signatures["encode"]
    matrix = encode(text=tf.constant(corpus["frame"]["question"].tolist()))["embedding"].numpy()
    vectors = encode(text=tf.constant(queries))["embedding"].numpy()
    scores = vectors @ matrix.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1), matrix, vectors


def test_search_is_the_exact_top_k(exported, corpus, index):
    k = 5
    model = tf.saved_model.load(str(index["float32"]))
    out = model.signatures["search"](query=tf.constant(QUERIES), k=tf.constant([k] * len(QUERIES)))
    order, scores, _, _ = _reference(exported, corpus, QUERIES, k)
    np.testing.assert_allclose(out["scores"].numpy(), scores, atol=1e-5)
    assert out["ids"].numpy().tolist() == order.tolist()
    frame = corpus["frame"]
    assert [[t.decode() for t in row] for row in out["texts"].numpy()] == [frame["question"][row].tolist() for row in order]
    assert [[t.decode() for t in row] for row in out["payloads"].numpy()] == [frame["answer"][row].tolist() for row in order]
    # per-query k: narrower rows are padded with id -1, "" and score 0
    mixed = model.signatures["search"](query=tf.constant(QUERIES[:2]), k=tf.constant([1, 3]))
    assert mixed["ids"].numpy().tolist() == [[order[0][0], -1, -1], order[1][:3].tolist()]
    assert mixed["texts"].numpy()[0][1:].tolist() == [b"", b""]


def test_int8_matrix_ranks_by_its_dequantized_rows(exported, corpus, index):
    from llmos_tf.compose.search_index import quantize_rows

    _, _, matrix, vectors = _reference(exported, corpus, QUERIES, 3)
    q, scale = quantize_rows(matrix)
    scores = vectors @ (q.astype(np.float32) * scale[:, None]).T
    out = tf.saved_model.load(str(index["int8"])).signatures["search"](query=tf.constant(QUERIES), k=tf.constant([3, 3, 3]))
    np.testing.assert_allclose(out["scores"].numpy(), np.sort(scores, axis=1)[:, ::-1][:, :3], atol=1e-5)
    np.testing.assert_allclose(out["scores"].numpy(), np.sort(vectors @ matrix.T, axis=1)[:, ::-1][:, :3], atol=0.02)
    assert "payloads" not in out


def test_loads_in_plain_tensorflow(index, tmp_path):
    out = load_in_plain_tf(index["float32"], "search", {"query": QUERIES[:1], "k": [2]}, tmp_path)
    assert len(out["ids"][0]) == 2 and len(out["payloads"][0]) == 2 and out["scores"][0][0] >= out["scores"][0][1]


def test_bad_input_is_refused(exported, corpus, index, tmp_path, capsys):
    model = tf.saved_model.load(str(index["float32"]))
    size = len(corpus["frame"])
    for query, k, reason in ((["a"], [0], "k must be at least 1"), (["a"], [size + 1], f"at most the corpus size ({size} rows)"),
                             (["  "], [1], "empty query")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            model.signatures["search"](query=tf.constant(query), k=tf.constant(k))
    base = tmp_path / "models"
    header_only = tmp_path / "empty.csv"
    header_only.write_text("question,answer\n")
    blank_row = tmp_path / "blank.csv"
    blank_row.write_text('question,answer\nwhere is my card,soon\n" ",never\n')
    for path, message in ((header_only, "no examples"), (blank_row, "line 3: empty text")):
        assert main(["index", "--model", str(exported["bert"]), "--corpus", str(path), "--text_column", "question",
                     "--name", "faq", "--model_base_path", str(base)]) == 2
        assert message in capsys.readouterr().err
    assert main(["index", "--model", str(exported["bilstm"]), "--corpus", str(corpus["path"]), "--text_column", "question",
                 "--name", "faq", "--model_base_path", str(base)]) == 2
    assert "no 'encode' signature" in capsys.readouterr().err
    assert not (base / "faq").exists() or not any(p.name.isdigit() for p in (base / "faq").iterdir())


def _search(stub, query, k):
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="faq", signature_name="search"))
    request.inputs["query"].CopyFrom(tf.make_tensor_proto(query, dtype=tf.string))
    request.inputs["k"].CopyFrom(tf.make_tensor_proto(k, dtype=tf.int32))
    response = stub.Predict(request, timeout=60)
    return response.model_spec.version.value, {key: tf.make_ndarray(v) for key, v in response.outputs.items()}


def test_served_hot_reloaded_and_errors_over_grpc_and_rest(exported, corpus, index, server_factory):  # noqa: F811
    from llmos_tf.compose.search_index import build_index

    model_dir = index["base"] / "faq"
    server = server_factory(["--model_base_path", str(model_dir), "--model_name", "faq", "--file_system_poll_wait_seconds", "0.5"])
    channel, predict, _ = stubs(server.target)
    with channel:
        version, out = _search(predict, QUERIES[:1], [2])
        expected = tf.saved_model.load(str(index["float32"])).signatures["search"](query=tf.constant(QUERIES[:1]), k=tf.constant([2]))
        assert version == 1 and out["ids"].tolist() == expected["ids"].numpy().tolist()
        with pytest.raises(grpc.RpcError) as info:
            _search(predict, QUERIES[:1], [0])
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "k must be at least 1" in info.value.details()
        body = json.dumps({"signature_name": "search", "instances": [{"query": "a dull plot", "k": 1000}]}).encode()
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(urllib.request.Request(f"{server.rest_url}/v1/models/faq:predict", data=body), timeout=60)
        assert http.value.code == 400 and "corpus size" in json.loads(http.value.read())["error"]

        # a broken version 2 appears: it fails to load and version 1 keeps answering
        broken = model_dir / ".tmp-broken"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel" * 4)
        broken.rename(model_dir / "2")
        time.sleep(2.0)
        assert _search(predict, QUERIES[:1], [2])[0] == 1
        shutil.rmtree(model_dir / "2")

        # a good version 3 (another corpus) replaces version 1 while clients keep asking: no request fails
        errors, versions, stop = [], [], threading.Event()

        def ask():
            while not stop.is_set():
                try:
                    versions.append(_search(predict, QUERIES[:1], [1])[0])
                except grpc.RpcError as err:  # pragma: no cover - reported below
                    errors.append(err.details())

        client = threading.Thread(target=ask)
        client.start()
        smaller = corpus["root"] / "faq_v3.csv"
        corpus["frame"].head(6).to_csv(smaller, index=False)
        build_index(str(exported["bert"]), str(smaller), index["base"], "faq", text_column="question", payload_column="answer", version=3)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not versions or versions[-1] != 3):
            time.sleep(0.2)
        stop.set()
        client.join(60)
        assert not errors and versions and versions[-1] == 3 and 1 in versions
        with pytest.raises(grpc.RpcError, match="at most the corpus size \\(6 rows\\)"):
            _search(predict, QUERIES[:1], [7])
