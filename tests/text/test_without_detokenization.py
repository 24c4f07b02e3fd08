"""Tokenizers drop tensorflow-text's detokenizing tables: the same ids, a smaller constant in every SavedModel."""
import keras_hub

from llmos_tf._tf import tf
from llmos_tf.text.bert_tokenizer import make_bert_tokenizer
from llmos_tf.text.wordpiece import make_tokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fine", "film", "dull", "##s", "##ly", "un", "##fine"]
TEXTS = tf.constant(["A fine film", "dull films, unfinely", "", "zzz unknown"])


def ids(tokenizer) -> list:
    out = tokenizer(TEXTS)
    return out if isinstance(out, list) else out.to_list()


def test_same_ids_as_keras_hubs_tokenizers_with_a_smaller_model():
    ours = make_bert_tokenizer(VOCAB)
    theirs = keras_hub.tokenizers.BertTokenizer(vocabulary=VOCAB, lowercase=True, dtype="int32")
    assert ids(ours) == ids(theirs)
    assert len(ours._fast_word_piece._model.numpy()) < len(theirs._fast_word_piece._model.numpy())

    ours = make_tokenizer(VOCAB)
    theirs = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=VOCAB, lowercase=True, strip_accents=True, oov_token="[UNK]", dtype="int32")
    assert ids(ours) == ids(theirs)
