"""TensorBoard event files really hold scalars, hparams, images, text and the graph."""
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata


def _load(path):
    acc = event_accumulator.EventAccumulator(str(path), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0, event_accumulator.SCALARS: 0})
    acc.Reload()
    return acc


def test_train_and_validation_scalars(trained_run):
    train = _load(trained_run / "train")
    tags = train.Tags()["tensors"] + train.Tags()["scalars"]
    for tag in ("epoch_loss", "epoch_accuracy", "learning_rate", "batch_loss"):
        assert tag in tags, (tag, tags)
    losses = [e for e in train.Tensors("epoch_loss")]
    assert len(losses) == 4
    assert train.Tags()["graph"] is True
    val = _load(trained_run / "validation")
    vtags = val.Tags()["tensors"] + val.Tags()["scalars"]
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_macro_f1", "worst_misclassified"):
        assert tag in vtags, (tag, vtags)
    assert "confusion_matrix" in vtags or "confusion_matrix" in val.Tags()["images"]


def test_hparams_session(trained_run):
    acc = _load(trained_run)
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    assert hparams_metadata.EXPERIMENT_TAG in content and hparams_metadata.SESSION_START_INFO_TAG in content
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    assert start.hparams["architecture"].string_value == "bilstm"
    assert start.hparams["training.learning_rate"].number_value == 0.01
    experiment = hparams_metadata.parse_experiment_plugin_data(content[hparams_metadata.EXPERIMENT_TAG])
    assert {m.name.tag for m in experiment.metric_infos} >= {"epoch_accuracy", "epoch_loss"}


def _plugin_tensors(acc, plugin):
    from tensorboard.util import tensor_util

    return {tag: [tensor_util.make_ndarray(e.tensor_proto) for e in acc.Tensors(tag)] for tag in acc.PluginTagToContent(plugin)}


def test_confusion_image_and_worst_text(trained_run):
    import io

    import matplotlib.image as mpimg
    from tensorboard.util import tensor_util

    val = _load(trained_run / "validation")
    images = _plugin_tensors(val, "images")["confusion_matrix"]
    assert len(images) == 4  # one per epoch
    width, height, png = images[-1]  # the images plugin stores [width, height, encoded png]
    picture = mpimg.imread(io.BytesIO(png), format="png")
    assert picture.shape[:2] == (int(height), int(width)) and picture.shape[0] > 100
    texts = [tensor_util.make_ndarray(e.tensor_proto).item().decode() for e in val.Tensors("worst_misclassified")]
    assert len(texts) == 4
    assert texts[-1].startswith("| text | true | predicted | p |") or texts[-1] == "No misclassified validation examples."


def test_pr_curves_per_class(trained_run):
    val = _load(trained_run / "validation")
    curves = _plugin_tensors(val, "pr_curves")
    assert set(curves) == {"pr_curve/negative", "pr_curve/positive"}
    for tag, per_epoch in curves.items():
        assert len(per_epoch) == 4, tag
        data = per_epoch[-1]
        assert data.shape == (6, 51)  # TP, FP, TN, FN, precision, recall x thresholds
        tp, fp, tn, fn, precision, recall = data
        assert tp[0] + fn[0] == tp[0] > 0  # threshold 0: everything is predicted positive
        assert tp[0] + fp[0] == 48  # every validation example (240 x 0.2)
        assert recall[0] == 1.0 and ((precision >= 0) & (precision <= 1)).all()
        assert (tp[:-1] >= tp[1:]).all()  # counts fall as the threshold rises


def test_embedding_projector(trained_run):
    import numpy as np
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    folder = trained_run / "validation"
    config = text_format.Parse((folder / "projector_config.pbtxt").read_text(), projector_config_pb2.ProjectorConfig())
    (entry,) = config.embeddings
    assert entry.metadata_path == "metadata.tsv"
    rows = [line.split("\t") for line in (folder / "metadata.tsv").read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["label", "predicted", "text"] and len(rows) == 1 + 48
    assert {r[0] for r in rows[1:]} == {"negative", "positive"} and all(r[2] for r in rows[1:])
    reader = tf_checkpoint_reader(folder)
    vectors = reader.get_tensor(entry.tensor_name)
    assert vectors.shape == (48, 64)  # max + mean pooling of a 2 x 16-unit BiLSTM
    assert np.isfinite(vectors).all() and np.unique(vectors.round(5), axis=0).shape[0] > 40


def tf_checkpoint_reader(folder):
    from llmos_tf._tf import tf

    return tf.train.load_checkpoint(tf.train.latest_checkpoint(str(folder)))


def test_profile_flag_writes_a_trace(tmp_path, tiny_data):
    from llmos_tf.cli import main
    from tests.conftest import tiny_config_text

    config = tmp_path / "p.yaml"
    config.write_text(tiny_config_text(tiny_data["train"], tmp_path / "runs", name="prof", epochs=1))
    assert main(["train", str(config), "--profile", "x"]) == 2  # a clear error, nothing trained
    assert not (tmp_path / "runs" / "prof").exists()
    assert main(["train", str(config), "--profile", "2,3"]) == 0
    traces = list((tmp_path / "runs" / "prof" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 1000
