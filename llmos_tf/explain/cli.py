"""``llmos explain`` (which words decided?) and ``llmos calibrate`` (is 0.97 really 97%?)."""
from __future__ import annotations

import json
import sys

from llmos_tf.cli_common import add_command


def add_explain_parsers(sub) -> None:
    """Register ``explain`` and ``calibrate`` (one line in :func:`llmos_tf.cli._add_optional`)."""
    _add_explain(sub)
    _add_calibrate(sub)


def _add_explain(sub) -> None:
    p = add_command(
        sub,
        "explain",
        help="which words decided a classifier's answer or a tagger's entities (integrated gradients; occlusion over gRPC)",
        description="Score each word of each text for the predicted class (or --label): integrated gradients over the "
        "token-embedding output (baseline: the padding embedding, Gauss-Legendre steps in one batch) with a run folder or "
        "an exported version's `explain` signature; with --server, the served model's own `explain` signature (computed by the "
        "server: llmos serve or tensorflow_model_server), or drop-one-word occlusion for a served classifier without one. "
        "Scores sum to p(class | text) - p(class | baseline); positive words support the class. For an NER tagger (run or "
        "export), every predicted entity gets each word's integrated gradients of the sum of its words' tag log-probabilities "
        "(B-/I- tags; for a CRF the emission scores of the decoded path). A multitask export explains each head "
        "(--head; its `explain_<head>` signature).",
        examples="""\
            examples:
              llmos explain --model runs/sample_bilstm "a wonderful, moving film"
              llmos explain --model runs/sample_bilstm --label negative "a wonderful, moving film" --json
              llmos explain --model saved_models/sst2/3 "not bad at all"
              llmos explain --model runs/sample_ner "Anna Berg flew to Oslo ."          # per entity (NER run or export)
              llmos explain --model saved_models/mt/1 --head ner "Anna Berg flew to Oslo ."   # one head of a multitask export
              llmos explain --server 127.0.0.1:8500 --model sst2 "not bad at all"     # the server's explain (else occlusion)
              llmos explain --server 127.0.0.1:8500 --model conll03_ner --version_label compressed "Anna Berg flew to Oslo ."
            """,
    )
    p.add_argument("texts", nargs="+", metavar="TEXT", help="texts to explain")
    p.add_argument("--model", required=True, metavar="RUN_OR_VERSION",
                   help="a run folder, an exported version (saved_models/<name>/<version>), or with --server a served model name")
    p.add_argument("--label", help="explain this class instead of the predicted one (run folders)")
    p.add_argument("--steps", type=int, default=32, help="integration steps (run folders; exports use the steps they were exported with)")
    p.add_argument("--server", metavar="HOST:PORT", help="explain a served model over gRPC (TF Serving's PredictionService): its `explain` "
                   "signature when it has one, else occlusion (classifiers)")
    p.add_argument("--head", help="which head of a multitask export or served multitask model (default: the first head)")
    p.add_argument("--version", type=int, help="model version (with --server; default: the latest)")
    p.add_argument("--version_label", metavar="LABEL", help="version label, e.g. compressed (with --server)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of coloured text")
    p.set_defaults(func=_cmd_explain)


def _cmd_explain(args) -> int:
    from llmos_tf.errors import RunError

    if args.steps < 1:
        raise RunError(f"--steps {args.steps}: expected a positive integer")
    if not args.server and (args.version is not None or args.version_label):
        raise RunError(f"--{'version' if args.version is not None else 'version_label'}: only used with --server "
                       "(a local --model is one version already)")
    if args.server:
        if args.label:
            raise RunError("--label: a served model is explained for its predicted class only; pass the run folder to choose the class")
        from llmos_tf.explain.served import explain_served

        served = explain_served(args.server, args.model, args.texts, head=args.head, version=args.version, version_label=args.version_label)
        if served.kind == "tagger":
            return _print_entities(args, served.frame)
        frame, method = served.frame, served.method
    else:
        from llmos_tf.model_ref import resolve_model
        from llmos_tf.task_kinds import task_kind

        ref = resolve_model(args.model, for_server=True)
        kind = task_kind(ref.task)
        if kind.has_heads:
            return _explain_head(args, ref)
        if args.head:
            raise RunError(f"--head: {args.model} is a single-task model; --head picks a head of a multitask export")
        explains = kind.explains
        if explains == "entities":
            return _explain_tagger(args, ref)
        if explains is None:
            raise RunError(f"--model {args.model}: a {ref.task} model; explain covers sentence classifiers and NER taggers (runs and exports)")
        if ref.is_savedmodel:
            if args.label:
                raise RunError("--label: an export's explain signature explains the predicted class; pass the run folder to choose the class")
            from llmos_tf.explain.explanations import explain_savedmodel

            frame = explain_savedmodel(ref.path, args.texts)
        else:
            from llmos_tf.explain.explanations import explain_run
            from llmos_tf.tasks.classification import TrainedRun

            frame = explain_run(TrainedRun.load(ref.path), args.texts, label=args.label, steps=args.steps)
        method = "integrated_gradients"
    return _print_classes(args, frame, method)


def _print_classes(args, frame, method: str) -> int:
    """A classifier's word scores: JSON (``--json``) or coloured text."""
    if args.json:
        head = {"head": args.head} if args.head else {}
        print(json.dumps({"model": args.model, **head, "method": method, "explanations": frame.records()}))
        return 0
    from llmos_tf.explain.explanations import render_terminal

    print(render_terminal(frame, colour=sys.stdout.isatty()))
    return 0


def _explain_tagger(args, ref) -> int:
    """An NER run or export: per predicted entity, each word's integrated gradients for the entity's tags."""
    from llmos_tf.errors import RunError
    from llmos_tf.explain import entity_frame

    if args.label:
        raise RunError("--label: a tagger is explained per predicted entity; there is no class to choose")
    if ref.is_savedmodel:
        import tensorflow_text  # noqa: F401  (the tokenizer ops of the SavedModel)

        from llmos_tf._tf import tf

        loaded = tf.saved_model.load(str(ref.path))
        if "explain" not in loaded.signatures:
            raise RunError(f"{ref.path}: this version has no 'explain' signature (exported before it existed, or TFLite-only); "
                           f"re-export its run with llmos export, or pass the run folder")
        frame = entity_frame.explain_tagger_savedmodel(loaded.signatures["explain"], args.texts)
    else:
        from llmos_tf.tasks.tagging import TrainedTagger

        frame = entity_frame.explain_tagger(TrainedTagger.load(ref.path), args.texts, steps=args.steps)
    return _print_entities(args, frame)


def _explain_head(args, ref) -> int:
    """One head of a multitask export, through its ``explain_<head>`` signature (``explain``: the first head)."""
    from llmos_tf.errors import RunError
    from llmos_tf.explain.entity_frame import entity_explanations
    from llmos_tf.explain.explanations import frame_from_explain_outputs

    if not ref.is_savedmodel:
        raise RunError(f"--model {args.model}: a multitask run; export it (llmos export; each head gets an explain_<head> signature) "
                       "and explain the version with --head")
    if args.label:
        raise RunError("--label: an export's explain signature explains the predicted class; pass a single-task run folder to choose the class")
    import tensorflow_text  # noqa: F401  (the tokenizer ops of the SavedModel)

    from llmos_tf._tf import tf
    from llmos_tf.export.base import EXPLAIN, explain_signature

    loaded = tf.saved_model.load(str(ref.path))
    signature = explain_signature(args.head) if args.head else EXPLAIN
    if signature not in loaded.signatures:
        prefix = explain_signature("")
        heads = sorted(name[len(prefix):] for name in loaded.signatures if name.startswith(prefix))
        raise RunError(f"{ref.path}: no {signature!r} signature; "
                       + (f"its heads: {', '.join(heads)}" if heads else "exported before multitask versions explained their heads: re-export the run"))
    texts = [str(t) for t in args.texts]
    out = {k: v.numpy() for k, v in loaded.signatures[signature](text=tf.constant(texts)).items()}
    if "entity_count" in out:
        return _print_entities(args, entity_explanations(texts, out))
    return _print_classes(args, frame_from_explain_outputs(texts, out), "integrated_gradients")


def _print_entities(args, frame) -> int:
    """A tagger's per-entity explanations: JSON (``--json``) or coloured lines."""
    from llmos_tf.explain import entity_frame

    if args.json:
        print(json.dumps({"model": args.model, "method": "integrated_gradients", "objective": "sum of the entity's tag log-probabilities",
                          "sentences": frame.records()}))
    else:
        print(entity_frame.render_entities_terminal(frame, colour=sys.stdout.isatty()))
    return 0


def _add_calibrate(sub) -> None:
    p = add_command(
        sub,
        "calibrate",
        help="temperature scaling: fit T on the validation logits, fold it into the run (exports serve calibrated probabilities)",
        description="Fit one temperature T on the run's validation split (or --data) by minimising the negative log-likelihood "
        "of softmax(logits / T), on the classifier's logits, not its probabilities. T is folded into the softmax head "
        "(kernel / T, bias / T) of model.keras, so every later `llmos export` serves calibrated probabilities and accuracy "
        "is unchanged; the model as trained stays in model.uncalibrated.keras, and run.json (and so the model card) records "
        "T and the expected calibration error (15 bins) before and after. A reliability diagram goes to <run>/calibration.png.",
        examples="""\
            examples:
              llmos calibrate --run runs/sst2_bert
              llmos calibrate --run runs/banking77_bert --data data/banking77_holdout.csv --json
              llmos export --run runs/sst2_bert --model_base_path saved_models --name sst2   # serves calibrated probabilities
            """,
    )
    p.add_argument("--run", required=True, metavar="RUN", help="a finished sentence-classification run folder")
    p.add_argument("--data", metavar="FILE", help="labelled file to fit on instead of the run's validation split (its config's columns)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_cmd_calibrate)


def _cmd_calibrate(args) -> int:
    from llmos_tf.explain.calibrate_run import calibrate_run

    summary = calibrate_run(args.run, data=args.data)
    if args.json:
        print(json.dumps({"run": args.run, **summary}))
        return 0
    rows = [("temperature", f"{summary['temperature']:.4f}"), ("examples", summary["examples"]),
            (f"ECE ({summary['bins']} bins) before", f"{summary['ece_before']:.4f}"), ("ECE after", f"{summary['ece_after']:.4f}"),
            ("NLL before", f"{summary['nll_before']:.4f}"), ("NLL after", f"{summary['nll_after']:.4f}"),
            ("reliability diagram", summary["reliability_diagram"])]
    width = max(len(k) for k, _ in rows)
    print(f"calibrated {args.run} on the {summary['data']}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return 0
