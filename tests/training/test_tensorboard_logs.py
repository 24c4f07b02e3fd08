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
