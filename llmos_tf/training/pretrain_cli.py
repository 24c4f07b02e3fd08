"""``llmos pretrain``: masked-language-model pretraining of a BERT encoder on plain text."""
from __future__ import annotations

import textwrap

EPILOG = textwrap.dedent(
    """\
    examples:
      llmos pretrain --corpus data/sample/corpus.txt --output encoders/sample_bert --epochs 3
      llmos pretrain --corpus more.txt --encoder encoders/sample_bert --output encoders/sample_bert_2
      llmos pretrain --corpus domain.txt --encoder minilm-l6 --output encoders/minilm_domain --max_length 128
    then fine-tune it with `llmos train` and `model: {architecture: bert, encoder: encoders/sample_bert}`.
    the corpus is UTF-8 text, one passage per line; masking follows BERT (15%, 80/10/10).
    training runs in a run folder (runs/pretrain_<output name>/ unless --run_dir) like `llmos train`:
    TensorBoard logs, best checkpoint, run.json; a killed run resumes when the same command runs again.
    """
)


def add_pretrain_parser(sub) -> None:
    """Add the ``pretrain`` subcommand to an argparse subparsers object."""
    from llmos_tf.cli_common import STRATEGIES, add_command
    from llmos_tf.training.pretrain_config import PretrainConfig

    d = PretrainConfig()
    p = add_command(
        sub,
        "pretrain",
        help="pretrain a BERT encoder with masked language modelling on text files",
        description="Pretrain (or continue pretraining) a BERT encoder with masked language modelling "
        "on plain-text files and write an encoder folder usable as `model.encoder` in `llmos train`.",
        examples=EPILOG,
    )
    p.add_argument("--corpus", nargs="+", required=True, metavar="FILE", help="text files, one passage per line")
    p.add_argument("--output", required=True, metavar="DIR", help="encoder folder to write (replaced if it is one)")
    p.add_argument("--run_dir", default=None, metavar="DIR", help="training run folder (default: runs/pretrain_<output folder name>)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run folder instead of refusing")
    p.add_argument("--encoder", default=None, metavar="SPEC",
                   help="continue from a checkpoint: minilm-l6, a keras-hub/Hugging Face folder or an "
                   "encoder folder from `llmos pretrain` (default: new encoder with the sizes below)")
    for name in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim", "vocabulary_size"):
        p.add_argument(f"--{name}", type=int, default=getattr(d, name),
                       help=f"new encoder's {name.replace('_', ' ')} (default {getattr(d, name)}; ignored with --encoder)")
    p.add_argument("--max_length", type=int, default=d.max_length, help=f"tokens per passage incl. [CLS]/[SEP] (default {d.max_length})")
    p.add_argument("--mask_rate", type=float, default=d.mask_rate, help=f"fraction of tokens selected for masking (default {d.mask_rate})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the corpus (default {d.epochs})")
    p.add_argument("--steps_per_epoch", type=int, default=None, help="at most this many steps per epoch (default: one pass over the corpus)")
    p.add_argument("--batch_size", type=int, default=d.batch_size, help=f"passages per training step (default {d.batch_size})")
    p.add_argument("--learning_rate", type=float, default=d.learning_rate, help=f"Adam learning rate (default {d.learning_rate})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed of masking, shuffling and a new encoder's weights (default {d.seed})")
    p.add_argument("--backup_every_steps", type=int, default=d.backup_every_steps,
                   help=f"save the resumable training state every N steps (default {d.backup_every_steps}); a killed run resumes from it")
    p.add_argument("--mixed_precision", choices=("float32", "mixed_float16", "mixed_bfloat16"), default=None,
                   help="Keras dtype policy while training, as `llmos train --mixed_precision` (default: float32)")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="tf.distribute strategy (multi_worker is refused: the encoder folder is exported by the process that trains)")
    p.add_argument("--profile", nargs="?", const="2,4", default=None, metavar="START,STOP",
                   help="record TensorBoard profiler traces for training batches START..STOP (2,4 when given alone)")
    p.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2), help="Keras progress output (default 0)")
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args) -> int:
    import shlex
    import sys

    from llmos_tf.training.pretrain_config import PretrainConfig

    fields = PretrainConfig.__dataclass_fields__
    config = PretrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    from llmos_tf.training.pretraining import pretrain

    summary = pretrain(config, verbose=args.verbose, overwrite=args.overwrite, strategy=args.strategy, profile=args.profile,
                       command="llmos " + shlex.join(sys.argv[1:]))
    fmt = lambda x: f"{x:.4f}" if isinstance(x, float) else str(x)  # noqa: E731
    rows = [
        ("encoder", config.encoder or "new"),
        ("passages", summary["num_passages"]),
        ("vocabulary", summary["vocabulary_size"]),
        ("steps", summary["steps"]),
        ("first loss", summary["first_loss"] if summary["first_loss"] is not None
         else f"{summary['losses'][0]:.4f} (epoch 1 mean; the run was resumed)"),
        ("last loss", summary["last_loss"]),
        ("output", summary["output"]),
        ("run", summary["run_dir"]),
    ]
    width = max(len(k) for k, _ in rows)
    print("pretrain\n--------")
    print("\n".join(f"{k.ljust(width)}  {fmt(v)}" for k, v in rows))
    return 0
