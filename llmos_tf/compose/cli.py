"""``llmos ensemble``, ``llmos encode`` and ``llmos index``: servables built from other servables.

Every check that needs no model (members, labels, weights, files, empty rows, names) runs before
TensorFlow is imported; the commands then load, build, verify the reloaded SavedModel and publish it
by renaming a finished folder into ``<model_base_path>/<name>/<version>``.
"""
from __future__ import annotations

import pathlib

from llmos_tf.cli_common import add_command, add_publish_flags, positive_int as _positive_int


def _add_publish_flags(p, what: str, example: str, unpublished: str | None = None) -> None:
    add_publish_flags(p, what, name_example=example, unpublished=unpublished)
    p.add_argument("--version", type=_positive_int, help="version number to publish as (default: the next free one)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --version")


def add_compose_parsers(sub) -> None:
    """Register ``ensemble``, ``encode`` and ``index`` on the ``llmos`` subcommand parser."""
    p = add_command(
        sub,
        "ensemble",
        help="serve several published classifiers as one model (weighted average or stacking, in one graph)",
        description="Combine published classifier versions into one SavedModel version whose serving_default runs "
        "every member (each with its own tokenizer) in one graph and combines their probabilities: a weighted "
        "average, or a logistic regression fitted on a validation file (--fit stacking). TF Serving has no "
        "serving-side ensembling; this is the one-graph way its maintainers advise. Members must share labels.",
        examples="""\
            examples:
              llmos ensemble --member saved_models/sst2_bert@compressed --member saved_models/sst2_bilstm_distilled/1 \\
                  --name sst2_ensemble --model_base_path saved_models
              llmos ensemble --member saved_models/sst2_bert/3 --member saved_models/sst2_bilstm_distilled/1 --weights 2 1 \\
                  --validation ../shared/data/sst2/dev.tsv --name sst2_ensemble --model_base_path saved_models
              llmos ensemble --member saved_models/sst2_bert/3 --member saved_models/sst2_bilstm_distilled/1 --fit stacking \\
                  --validation held_out.csv --name sst2_stacked --model_base_path saved_models

            a member is saved_models/<name>@<label> (a version label of <base>/models.config), saved_models/<name>/<version>,
            or saved_models/<name> (its highest version). The model card (assets/llmos.json) lists the members, their
            weights and their own metrics. With --validation the card also holds each member's and the ensemble's
            accuracy on that file (stacking: fitted on it, so that score is in-sample).
            """,
    )
    p.add_argument("--member", action="append", required=True, metavar="MODEL", help="a published classifier version (repeat, 2 or more)")
    p.add_argument("--weights", nargs="+", type=float, metavar="W", help="one non-negative weight per --member, normalised to sum to 1 (default: equal)")
    p.add_argument("--fit", choices=("weighted_average", "stacking"), default="weighted_average",
                   help="how probabilities are combined: weighted_average, or stacking (logistic regression fitted on --validation)")
    p.add_argument("--validation", metavar="FILE", help="labelled texts the members were not trained on: fits stacking, and scores every member and the ensemble (default: none)")
    p.add_argument("--text_column", metavar="NAME", help="column of --validation holding the texts (default: text or sentence)")
    p.add_argument("--label_column", metavar="NAME", help="column of --validation holding the labels (default: label)")
    _add_publish_flags(p, "ensemble", "sst2_ensemble")
    p.set_defaults(func=_cmd_ensemble)

    p = add_command(
        sub,
        "encode",
        help="sentence embeddings: write a file's vectors to Parquet, or publish a pretrained encoder",
        description="Encode texts into L2-normalised mean-pooled sentence vectors (cosine similarity = dot product) "
        "with a BERT classifier export's `encode` signature or a pretrained encoder (minilm-l6: all-MiniLM-L6-v2, a "
        "sentence-embedding model, useful without fine-tuning). With FILE and --out, writes Parquet (id, line, text, "
        "embedding) -- the input of a vector database or a ScaNN/FAISS index. With --model_base_path and --name, "
        "publishes the pretrained encoder as a SavedModel version whose `encode` signature takes raw text.",
        examples="""\
            examples:
              llmos encode --model minilm-l6 faq.csv --text_column question --out faq_vectors.parquet
              llmos encode --model saved_models/banking77_bert/2 requests.jsonl --out vectors.parquet
              llmos encode --model minilm-l6 --model_base_path saved_models --name minilm
            read the vectors back: numpy.stack(pandas.read_parquet("vectors.parquet")["embedding"])
            """,
    )
    p.add_argument("file", nargs="?", metavar="FILE", help="csv, tsv, jsonl or parquet file of texts to encode")
    p.add_argument("--model", required=True, help="an encoder (minilm-l6, a checkpoint folder) or a published version with an `encode` signature")
    p.add_argument("--out", metavar="PARQUET", help="where FILE's vectors go (a .parquet file)")
    p.add_argument("--text_column", metavar="NAME", help="column of FILE holding the texts (default: text or sentence)")
    p.add_argument("--batch_size", type=_positive_int, default=64, help="texts per encoder call")
    _add_publish_flags(p, "encoder", "minilm", unpublished="FILE's vectors go to --out")
    p.add_argument("--max_length", type=_positive_int, default=128, help="tokens per text in the published encoder")
    p.add_argument("--weights", choices=("float32", "int8"), default="float32", help="weight storage of the published encoder (int8: 4x smaller)")
    p.set_defaults(func=_cmd_encode)

    p = add_command(
        sub,
        "index",
        help="semantic search as a model: a SavedModel whose `search` signature returns a corpus's k nearest rows",
        description="Encode a corpus and publish a search index as a SavedModel version. Its `search` signature takes "
        "`query` (string [None]) and `k` (int32 [None], one per query) and returns `ids`, `texts`, `scores` (and "
        "`payloads` with --payload_column) of the k most similar rows: exact brute force (matmul + tf.math.top_k over "
        "a float32 or int8 matrix held in the model), no custom ops, so the stock tensorflow_model_server serves it. "
        "Served and hot-reloaded like any model: a new version replaces the old one under load.",
        examples="""\
            examples:
              llmos index --model minilm-l6 --corpus faq.csv --text_column question --payload_column answer \\
                  --name faq --model_base_path saved_models
              llmos index --model saved_models/banking77_bert/2 --corpus requests.csv --dtype int8 --name requests --model_base_path saved_models
            then: llmos serve --model_base_path saved_models/faq --model_name faq, and ask the `search` signature:
              curl -d '{"signature_name": "search", "instances": [{"query": "my card was stolen", "k": 3}]}' \\
                  localhost:8501/v1/models/faq:predict
            k < 1, k larger than the corpus or an empty query: INVALID_ARGUMENT (HTTP 400). For millions of rows use an
            approximate index (ScaNN, FAISS) fed by `llmos encode ... --out vectors.parquet`: see docs/compose.md.
            """,
    )
    p.add_argument("--model", required=True, help="an encoder (minilm-l6, a checkpoint folder) or a published version with an `encode` signature")
    p.add_argument("--corpus", required=True, metavar="FILE", help="csv, tsv, jsonl or parquet file of the texts to search")
    p.add_argument("--text_column", metavar="NAME", help="column of --corpus holding the texts (default: text or sentence)")
    p.add_argument("--payload_column", metavar="NAME", help="a column returned with each hit as `payloads` (e.g. an FAQ's answer) (default: none)")
    p.add_argument("--dtype", choices=("float32", "int8"), default="float32", help="storage of the corpus matrix (int8: 4x smaller, scores within ~0.01)")
    p.add_argument("--batch_size", type=_positive_int, default=64, help="texts per encoder call while indexing")
    _add_publish_flags(p, "index", "faq")
    p.set_defaults(func=_cmd_index)


def _table(rows) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _cmd_ensemble(args) -> int:
    from llmos_tf.compose.plan import plan_ensemble
    from llmos_tf.export.layout import version_target

    plan = plan_ensemble(args.member, weights=args.weights, fit=args.fit, validation=args.validation,
                         text_column=args.text_column, label_column=args.label_column)  # before TensorFlow
    version_target(args.model_base_path, args.name, args.version, force=args.force)
    from llmos_tf.compose.ensemble import build_ensemble

    path = build_ensemble(args.member, args.model_base_path, args.name, weights=args.weights, fit=args.fit, validation=args.validation,
                          text_column=args.text_column, label_column=args.label_column, version=args.version, force=args.force)
    from llmos_tf.compose.refs import read_card

    card = read_card(path)
    rows = [("version", str(path)), ("labels", ", ".join(plan.labels)), ("combiner", args.fit)]
    scored = card["metrics"].get("members_on_validation") or [None] * len(plan.members)
    for i, (member, score) in enumerate(zip(card["members"], scored)):
        weight = f"weight {member['weight']:.3f}, " if member.get("weight") is not None else ""
        own = (member.get("metrics") or {}).get("validation", {}).get("accuracy")
        on_file = f", {score['accuracy']:.4f} on --validation" if score else ""
        rows.append((f"member {i + 1}", f"{member['spec']} ({weight}card accuracy {own if own is None else f'{own:.4f}'}{on_file})"))
    for key in ("validation", "validation_fit"):
        if key in card["metrics"]:
            m = card["metrics"][key]
            rows.append((f"ensemble ({key})", f"accuracy {m['accuracy']:.4f}, macro F1 {m['macro_f1']:.4f} on {m['examples']} examples"))
    print(_table(rows))
    return 0


def _cmd_encode(args) -> int:
    from llmos_tf.errors import ConfigError

    publish = bool(args.model_base_path or args.name)
    if publish and not (args.model_base_path and args.name):
        raise ConfigError("publishing an encoder needs both --model_base_path and --name")
    if not publish and not (args.file and args.out):
        raise ConfigError("nothing to do: give FILE and --out PARQUET to encode a file, or --model_base_path and --name to publish the encoder")
    if args.file and not args.out:
        raise ConfigError(f"{args.file}: where should the vectors go? add --out vectors.parquet")
    if args.out and not args.file:
        raise ConfigError("--out: give the FILE of texts to encode")
    if args.out and pathlib.Path(args.out).suffix.lower() != ".parquet":
        raise ConfigError(f"--out {args.out}: expected a .parquet file")
    if args.file:
        from llmos_tf.data.readers import read_texts

        read_texts(args.file, args.text_column)  # empty file, missing column, empty rows: before TensorFlow
    from llmos_tf.compose.embeddings import encode_file, export_encoder, is_encoder_spec, load_encoder

    if publish:
        if not is_encoder_spec(args.model):
            raise ConfigError(f"--model {args.model}: only a pretrained encoder (e.g. minilm-l6) is published by `llmos encode`; "
                              "a published version already serves its `encode` signature")
        path = export_encoder(args.model, args.model_base_path, args.name, max_length=args.max_length, weights=args.weights,
                              version=args.version, force=args.force)
        print(f"published {args.model} as {path} (signature encode: text -> embedding)")
    if args.file:
        encoder = load_encoder(args.model)
        out = encode_file(args.model, args.file, args.out, text_column=args.text_column, batch_size=args.batch_size, encoder=encoder)
        import pyarrow.parquet as pq

        meta = pq.read_metadata(out)
        print(f"wrote {meta.num_rows} vectors of dimension {meta.schema.to_arrow_schema().metadata[b'llmos.dim'].decode()} to {out}")
    return 0


def _cmd_index(args) -> int:
    from llmos_tf.compose.plan import read_corpus
    from llmos_tf.export.layout import version_target

    texts, _, _ = read_corpus(args.corpus, args.text_column, args.payload_column)  # before TensorFlow
    version_target(args.model_base_path, args.name, args.version, force=args.force)
    from llmos_tf.compose.refs import read_card
    from llmos_tf.compose.search_index import build_index

    path = build_index(args.model, args.corpus, args.model_base_path, args.name, text_column=args.text_column,
                       payload_column=args.payload_column, dtype=args.dtype, batch_size=args.batch_size, version=args.version, force=args.force)
    matrix = read_card(path)["matrix"]
    print(_table([("version", str(path)), ("rows", len(texts)), ("matrix", f"{matrix['rows']} x {matrix['dim']} {matrix['dtype']}"),
                  ("signature", "search: query, k -> ids, texts, scores" + (", payloads" if args.payload_column else ""))]))
    return 0
