"""WordPiece vocabularies and tokenizers for models trained from scratch.

The BiLSTM learns its own vocabulary from the training texts with keras-hub's
``compute_word_piece_vocabulary`` and tokenizes with keras-hub's
``WordPieceTokenizer``; both run on tensorflow-text ops, so the same tokenizer
works inside tf.data and inside the exported SavedModel (clients send raw text).

Example::

    vocab = learn_vocabulary(["a fine film", "a dull film"], vocabulary_size=50)
    tokenizer = make_tokenizer(vocab)
    tokenizer(tf.constant(["a fine film"]))  # RaggedTensor of token ids
"""
from __future__ import annotations

import pathlib
from typing import Iterable, Sequence

from llmos_tf._tf import tf
from llmos_tf.errors import RunError

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
RESERVED_TOKENS = (PAD_TOKEN, UNK_TOKEN)  # [PAD] must be id 0: the embedding masks id 0


def learn_vocabulary(
    texts: Sequence[str] | Iterable[str],
    vocabulary_size: int,
    *,
    lowercase: bool = True,
    strip_accents: bool = True,
    reserved_tokens: Sequence[str] = RESERVED_TOKENS,
) -> list[str]:
    """Learn a WordPiece vocabulary (keras-hub) from training texts; ``[PAD]`` is id 0."""
    import keras_hub  # Keras 3 package; imported late because it is slow to import

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string)).batch(1024)
    vocab = keras_hub.tokenizers.compute_word_piece_vocabulary(
        dataset,
        vocabulary_size=vocabulary_size,
        lowercase=lowercase,
        strip_accents=strip_accents,
        reserved_tokens=list(reserved_tokens),
    )
    return list(vocab)


def make_tokenizer(vocabulary: Sequence[str], *, lowercase: bool = True, strip_accents: bool = True):
    """A keras-hub ``WordPieceTokenizer`` that maps raw strings to ragged int32 ids."""
    import keras_hub

    return without_detokenization(keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=list(vocabulary),
        lowercase=lowercase,
        strip_accents=strip_accents,
        oov_token=UNK_TOKEN,
        dtype="int32",
    ))


def without_detokenization(tokenizer):
    """The keras-hub WordPiece ``tokenizer`` with a tensorflow-text model that cannot detokenize.

    keras-hub builds its ``FastWordpieceTokenizer`` with ``support_detokenization=True``;
    that model is a constant every SavedModel carries, and the detokenizing tables are 29%
    of it (MiniLM's 30,522 pieces: 1.85 MB → 1.31 MB). Nothing here turns ids back into
    text, so tokenizers drop them (``tokenizer.detokenize`` then raises). Ids are unchanged.
    """
    import tensorflow_text as tf_text

    fast = getattr(tokenizer, "_fast_word_piece", None)
    if fast is None or not hasattr(tokenizer, "suffix_indicator"):  # another keras-hub: keep its tokenizer as it is
        return tokenizer
    tokenizer._fast_word_piece = tf_text.FastWordpieceTokenizer(
        vocab=tokenizer.vocabulary,
        token_out_type=tokenizer.compute_dtype,
        suffix_indicator=tokenizer.suffix_indicator,
        unknown_token=tokenizer.oov_token,
        no_pretokenization=True,
        support_detokenization=False,
    )
    return tokenizer


def save_vocabulary(vocabulary: Sequence[str], path: str | pathlib.Path) -> None:
    pathlib.Path(path).write_text("\n".join(vocabulary) + "\n", encoding="utf-8")


def load_vocabulary(path: str | pathlib.Path) -> list[str]:
    path = pathlib.Path(path)
    if not path.is_file():
        raise RunError(f"{path}: vocabulary file not found (is this a finished run folder?)")
    vocab = path.read_text(encoding="utf-8").splitlines()
    if not vocab or vocab[0] != PAD_TOKEN:
        raise RunError(f"{path}: not a llmos vocabulary (first token must be {PAD_TOKEN})")
    return vocab
