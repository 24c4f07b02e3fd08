"""Structured compression of BERT classifiers: fewer vocabulary rows, layers, heads and feed-forward neurons.

TF-MOT's pruning zeroes weights but keeps every matrix's shape (its only
structured option is 2:4 sparsity), so the model is smaller only after gzip and
no faster on a CPU. Here rows and columns go away (as TextPruner does for
PyTorch models): :mod:`.vocabulary` trims the WordPiece vocabulary,
:mod:`.importance` ranks heads and neurons (Michel et al. 2019),
:mod:`.surgery` rebuilds the encoder with smaller kernels, :mod:`.steps` runs
them in order with distillation from the dense model, and :mod:`.flops` counts
what is left. ``llmos compress --trim_vocabulary --keep_layers 0,2,4
--prune_heads 0.25 --prune_ffn 0.5`` composes them with TF-MOT pruning and int8.
"""
