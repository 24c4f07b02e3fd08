"""The structured steps of ``llmos compress``, in order, each a variant (a row of the report).

1. ``structured_vocab`` (``--trim_vocabulary [CORPUS]``): trimmed WordPiece vocabulary and
   embedding rows; no fine-tuning (texts whose tokens all survive get identical outputs).
2. ``structured_layers`` (``--keep_layers 0,2,4``): only those transformer blocks.
3. ``structured_heads`` (``--prune_heads F``): the fraction F of attention heads with the lowest
   importance removed (:mod:`.importance`), projections rebuilt with fewer heads.
4. ``structured_ffn`` (``--prune_ffn F``): the same for feed-forward neurons.

Steps are cumulative (each starts from the previous one's model), so the rows
say what each step contributed. After steps 2-4 the model is fine-tuned on the
run's training data, with the dense model as teacher when ``distill_alpha`` is
given (:class:`~llmos_tf.compression.dense_teacher.TeacherGuidedFineTune`); the
teacher is the vocabulary-trimmed dense model, which computes the dense
model's function on the trimmed token ids. Every step's model and its run (a
copy of the loaded run with the trimmed vocabulary, so export, fine-tuning and
TFLite calibration tokenize with it) come back; the last one is what TF-MOT
pruning and quantization build on. Finished steps are cached in
``<report_dir>/structured_cache`` under their settings, so a second
``llmos compress`` with the same flags (say, another ``--max_drop``) does not fine-tune again.

Example::

    steps = structured_steps(run, StructuredOptions(trim_vocabulary="train", keep_layers=(0, 2, 4)),
                             epochs=1, steps_per_epoch=300, distill_alpha=0.5, cache_dir=pathlib.Path("cache"))
    [(s.name, s.details["shape"]["layers"]) for s in steps]
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from llmos_tf._tf import tf_keras
from llmos_tf.compression.structured import surgery
from llmos_tf.errors import ConfigError


@dataclass(frozen=True)
class StructuredOptions:
    trim_vocabulary: str | None = None  # "train" (the run's training texts) or a corpus file; None: keep it
    keep_layers: tuple[int, ...] | None = None
    prune_heads: float | None = None
    prune_ffn: float | None = None
    importance_batches: int = 32

    @property
    def active(self) -> bool:
        return bool(self.trim_vocabulary or self.keep_layers or self.prune_heads or self.prune_ffn)

    def check(self) -> None:
        """Refuse bad values before anything loads."""
        for flag, value in (("--prune_heads", self.prune_heads), ("--prune_ffn", self.prune_ffn)):
            if value is not None and not 0.0 < value < 1.0:
                raise ConfigError(f"{flag}: expected a fraction between 0 and 1 (exclusive), got {value}")
        if self.keep_layers is not None and (not self.keep_layers or min(self.keep_layers) < 0
                                             or len(set(self.keep_layers)) != len(self.keep_layers)):
            raise ConfigError(f"--keep_layers: expected distinct layer indices from 0, e.g. 0,2,4; got {self.keep_layers}")
        if self.importance_batches < 1:
            raise ConfigError(f"--importance_batches: expected a positive number, got {self.importance_batches}")
        if self.trim_vocabulary not in (None, "train") and not pathlib.Path(self.trim_vocabulary).is_file():
            raise ConfigError(f"--trim_vocabulary {self.trim_vocabulary}: no such corpus file (or give no value: the training texts)")


@dataclass
class StructuredStep:
    name: str
    run: Any  # the loaded run with this step's model and (trimmed) vocabulary
    details: dict

    @property
    def model(self) -> tf_keras.Model:
        return self.run.model


def check_run(run, options: StructuredOptions) -> None:
    """Refuse what the loaded run cannot do (a tagger, layers it does not have) before any work."""
    from llmos_tf.compression.run_data import is_tagger

    if is_tagger(run):
        raise ConfigError("structured compression is implemented for BERT sentence classifiers; this run is a tagger")
    encoder = surgery.encoder_of(run.model)
    if options.keep_layers and max(options.keep_layers) >= encoder.num_layers:
        raise ConfigError(f"--keep_layers {','.join(map(str, options.keep_layers))}: the encoder has layers 0..{encoder.num_layers - 1}")


def fine_tune(student: tf_keras.Model, teacher: tf_keras.Model | None, run, *, epochs: int, steps_per_epoch: int | None,
              learning_rate: float | None, distill_alpha: float | None, temperature: float, verbose: int = 0) -> dict:
    """Fine-tune ``student`` in place on ``run``'s training data; learning from ``teacher`` when ``distill_alpha`` is set."""
    from llmos_tf.compression.run_data import fine_tune_data

    data = fine_tune_data(run, steps_per_epoch=steps_per_epoch)
    total = data.steps_per_epoch * max(1, epochs)
    lr = learning_rate or float(run.config.training.learning_rate)
    optimizer = tf_keras.optimizers.Adam(tf_keras.optimizers.schedules.PolynomialDecay(lr, total, end_learning_rate=0.0), clipnorm=1.0)
    trainee = student
    if distill_alpha is not None and teacher is not None:
        from llmos_tf.compression.dense_teacher import TeacherGuidedFineTune

        trainee = TeacherGuidedFineTune(student, teacher, data.loss, alpha=distill_alpha, temperature=temperature, name="guided")
        trainee.compile(optimizer=optimizer, metrics=data.metrics)
    else:
        student.compile(optimizer=optimizer, loss=data.loss, metrics=data.metrics)
    history = trainee.fit(data.dataset, epochs=max(1, epochs), steps_per_epoch=data.steps_per_epoch, verbose=verbose)
    return {"epochs": epochs, "steps": total, "learning_rate": lr, "distill_alpha": distill_alpha, "temperature": temperature,
            "history": {k: [float(x) for x in v] for k, v in history.history.items()}}


def _cache_load(folder: pathlib.Path, settings: dict):
    state = folder / "step.json"
    if not state.is_file() or not (folder / "model.keras").is_file():
        return None
    saved = json.loads(state.read_text())
    if saved.get("settings") != json.loads(json.dumps(settings, default=str)):
        return None
    import llmos_tf.models.heads  # noqa: F401  (registers the custom layers)

    return tf_keras.models.load_model(folder / "model.keras", compile=False), saved["details"], saved.get("vocabulary")


def _cache_save(folder: pathlib.Path, settings: dict, model, details: dict, vocabulary: Sequence[str] | None) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.keras")
    (tmp / "step.json").write_text(json.dumps({"settings": settings, "details": details, "vocabulary": vocabulary}, default=str))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def structured_steps(run, options: StructuredOptions, *, validation_texts: Sequence[str], epochs: int = 1,
                     steps_per_epoch: int | None = None, learning_rate: float | None = None, distill_alpha: float | None = None,
                     temperature: float = 2.0, cache_dir: pathlib.Path | None = None, verbose: int = 0,
                     say: Callable[[str], None] = print) -> list[StructuredStep]:
    """The structured variants of ``run`` (see the module docstring), in order."""
    from llmos_tf.compression.structured import importance as imp
    from llmos_tf.compression.structured import vocabulary as vocab

    options.check()
    check_run(run, options)
    train = dict(epochs=epochs, steps_per_epoch=steps_per_epoch, learning_rate=learning_rate, distill_alpha=distill_alpha,
                 temperature=temperature, verbose=verbose)
    settings: dict = {"run": str(run.run_dir), "fine_tune": {k: v for k, v in train.items() if k != "verbose"}}
    steps: list[StructuredStep] = []
    current, teacher = run, run.model

    def step(name: str, what: dict, build: Callable[[], tuple[tf_keras.Model, dict, list[str] | None]]) -> None:
        nonlocal current
        settings[name] = what
        folder = cache_dir / name if cache_dir is not None else None
        cached = _cache_load(folder, settings) if folder is not None else None
        if cached is not None:
            say(f"{name}: reusing {folder} (same settings)")
            model, details, vocabulary = cached
        else:
            model, details, vocabulary = build()
            if folder is not None:
                _cache_save(folder, dict(settings), model, details, vocabulary)
        current = dataclasses.replace(current, model=model, vocabulary=list(vocabulary or current.vocabulary))
        details = {**details, "steps": [s.name for s in steps] + [name], "shape": surgery.describe(model)}
        steps.append(StructuredStep(name, current, details))

    if options.trim_vocabulary:
        def trim():
            source = options.trim_vocabulary
            if source == "train":
                from llmos_tf.data.prepare import prepare_classification_data

                texts = prepare_classification_data(run.config.data, run.config.seed).train["text"].astype(str).tolist()
            else:
                texts = vocab.read_corpus(source, run.config.data.text_column)
            keep = vocab.corpus_token_ids(run, texts)
            cover = vocab.coverage(run, keep, list(validation_texts))
            say(f"trimming the vocabulary to the {len(keep):,} of {len(run.vocabulary):,} tokens used by {source} "
                f"({cover['token_coverage']:.2%} of validation tokens kept)")
            details = {"corpus": source, "corpus_texts": len(texts), "vocabulary_before": len(run.vocabulary),
                       "vocabulary_after": int(len(keep)), **cover}
            return surgery.rebuild(current.model, keep_tokens=keep), details, [run.vocabulary[i] for i in keep]

        step("structured_vocab", {"corpus": options.trim_vocabulary}, trim)
        teacher = current.model  # the dense function on the trimmed ids

    def tuned(model: tf_keras.Model, details: dict):
        details["fine_tune"] = fine_tune(model, teacher, current, **train)
        return model, details, None

    if options.keep_layers:
        layers = sorted(options.keep_layers)
        say(f"keeping transformer layers {layers}, then fine-tuning ...")
        step("structured_layers", {"keep_layers": layers},
             lambda: tuned(surgery.rebuild(current.model, keep_layers=layers), {"keep_layers": layers}))
    for name, fraction, kind in (("structured_heads", options.prune_heads, "heads"), ("structured_ffn", options.prune_ffn, "neurons")):
        if not fraction:
            continue

        def prune(fraction=fraction, kind=kind):
            from llmos_tf.compression.run_data import fine_tune_data

            data = fine_tune_data(current, steps_per_epoch=options.importance_batches)
            scores = imp.importance(current.model, data.dataset, batches=options.importance_batches, loss=data.loss)
            keep = imp.lowest(scores.heads if kind == "heads" else scores.neurons, fraction)
            say(f"removing {fraction:.0%} of the {kind} ranked by gradient x weight on {scores.batches} training batches, then fine-tuning ...")
            small = surgery.rebuild(current.model, **({"keep_heads": keep} if kind == "heads" else {"keep_neurons": keep}))
            return tuned(small, {f"prune_{kind}": fraction, f"kept_{kind}": {str(k): v for k, v in keep.items()},
                                 "importance_batches": scores.batches})

        step(name, {"fraction": fraction, "importance_batches": options.importance_batches}, prune)
    return steps
