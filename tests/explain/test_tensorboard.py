"""The worst misclassified validation examples, explained, in TensorBoard's text plugin (read back from the event file)."""
import numpy as np

from llmos_tf._tf import tf


def test_worst_misclassified_with_attributions(trained_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from llmos_tf.data.pipeline import BatchingPlan, make_dataset
    from llmos_tf.explain.tensorboard import TAG, WorstExplained, highlighted_markdown
    from llmos_tf.tasks.classification import TrainedRun

    run = TrainedRun.load(trained_run)
    texts = ["the film was wonderful and lovely", "the plot was awful and dull", "the cast was superb"]
    wrong_labels = np.array([0, 1, 1])  # the first two are labelled the opposite way: two confident "mistakes"
    plan = BatchingPlan(batch_size=8, max_length=run.max_length, bucketing=False)
    dataset = make_dataset(texts, None, run.tokenizer(), plan, training=False, cache=False)
    callback = WorstExplained(dataset, wrong_labels, texts, run.labels.names, run.tokenizer(), run.max_length, None, tmp_path, count=5)
    callback.set_model(run.model)
    callback.on_train_end()
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0}).Reload()
    table = tf.make_ndarray(events.Tensors(TAG)[-1].tensor_proto).item().decode()
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, the two mistakes (most confident first)
    assert "| negative | positive |" in lines[2] or "| negative | positive |" in lines[3]
    assert "**wonderful**" in table or "**lovely**" in table  # the words that drove the (wrong) answer, in bold
    assert highlighted_markdown(["a", "b", "c"], [0.5, -0.5, 0.01]) == "**a**<sub>+0.50</sub> *b*<sub>-0.50</sub> c"


def test_training_writes_it(trained_run):
    """The classification task's callbacks include it: the fixture's own training wrote the tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from llmos_tf.explain.tensorboard import TAG

    events = EventAccumulator(str(trained_run / "validation"), size_guidance={"tensors": 0}).Reload()
    assert TAG in events.Tags()["tensors"]
