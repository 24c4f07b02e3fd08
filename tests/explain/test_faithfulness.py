"""The deletion test on the trained fixture: removing the top-attributed words lowers the predicted class's
probability more than removing as many random words (ERASER comprehensiveness / AOPC)."""
import pandas as pd


def test_deletion_beats_random(trained_run, tiny_data):
    from llmos_tf.explain.faithfulness import deletion_test
    from llmos_tf.tasks.classification import TrainedRun

    texts = pd.read_csv(tiny_data["test"])["text"].tolist()[:24]
    result = deletion_test(TrainedRun.load(trained_run), texts, k_max=3, seed=0, steps=16)
    assert result["texts"] == 24
    assert result["aopc_attributed"] > 1.5 * result["aopc_random"] > 0, result
    assert result["drop_at_k_attributed"][0] > result["drop_at_k_random"][0]
