"""The project's own small sample data sets, generated offline from templates.

Demos, notebooks and tests need data that exists on every clone, without
downloads and without copies of public corpora. These generators write
small, deterministic (per seed) data sets in every format the readers take:

- ``sentiment_*``: review-like sentences labelled ``positive``/``negative``
  (csv, plus the training rows as SST-2-style tsv and as parquet);
- ``intent_*``: banking-assistant requests in six intents (jsonl, Banking77-style
  ``text``/``category`` fields);
- ``ner_*``: CoNLL ``token tag`` sentences with PER/ORG/LOC/MISC entities;
- ``corpus.txt``: plain sentences for masked-language-model pretraining.

The word lists and templates are written for this project. The signal is
deliberately clean (polarity words, negation, contrast clauses) so a small
BiLSTM learns it in a few epochs.

Why one module of ~450 lines: about half of it is word lists and templates
(data, not logic); the three generators share the writers and ``write_sample_data``
writes all sets with one seed, so the sets stay reviewable and reproducible in one place.

Example::

    python -m llmos_tf.data.sample data/sample
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd

# ---------------------------------------------------------------------------
# sentiment
# ---------------------------------------------------------------------------
SUBJECTS = (
    "the movie", "this film", "the plot", "the acting", "the soundtrack", "the ending", "the sequel",
    "the cast", "the script", "the dialogue", "the director's new film", "this documentary",
    "the animation", "the first episode", "this series", "the finale", "the lead performance",
    "this phone", "the battery", "the screen", "these headphones", "the camera", "this blender",
    "the keyboard", "the hotel room", "the service", "the delivery", "this book", "the novel",
    "the restaurant", "the coffee maker", "the app", "the update", "the game", "the concert",
)
POSITIVE_ADJECTIVES = (
    "good", "great", "wonderful", "brilliant", "excellent", "delightful", "charming", "moving",
    "superb", "fantastic", "enjoyable", "solid", "reliable", "beautiful", "funny", "clever",
    "gripping", "impressive", "lovely", "fresh", "smart", "satisfying", "touching", "sharp",
    "comfortable", "powerful", "elegant", "memorable", "polished", "fun",
)
NEGATIVE_ADJECTIVES = (
    "bad", "terrible", "awful", "boring", "dull", "disappointing", "weak", "clumsy", "predictable",
    "mediocre", "poor", "tedious", "flimsy", "bland", "painful", "messy", "forgettable", "annoying",
    "sloppy", "cheap", "frustrating", "lifeless", "confusing", "unreliable", "ugly", "pointless",
    "shallow", "noisy", "awkward", "broken",
)
INTENSIFIERS = (
    "", "", "", "really", "very", "truly", "incredibly", "quite", "so", "remarkably", "genuinely",
    "surprisingly", "absolutely", "rather", "pretty",
)
POSITIVE_VERDICTS = (
    "i loved it", "i would recommend it to everyone", "worth every penny", "a must see",
    "i enjoyed every minute", "i would buy it again", "five stars from me", "it made my day",
    "highly recommended", "i was pleasantly surprised", "i will watch it again",
    "my whole family loved it", "a real pleasure",
)
NEGATIVE_VERDICTS = (
    "a complete waste of time", "i want my money back", "avoid it", "i regret buying it",
    "one star from me", "i walked out halfway", "never again", "i would not recommend it",
    "it ruined my evening", "save your money", "i returned it the next day",
    "what a letdown", "i fell asleep twice",
)
OPENERS = (
    "honestly ,", "to be fair ,", "after two weeks ,", "from start to finish", "overall ,",
    "for the price ,", "i have to say", "in my opinion ,", "frankly ,", "as a longtime fan ,",
    "compared to the first one ,", "at first glance ,", "",
)
CLOSERS = (
    "", "", "if you ask me", "for a weekend", "in every way", "from the very first scene",
    "for the whole family", "by a long shot", "to be honest", "this time around",
)
QUOTED_WORDS = ("twist", "comedy", "premium", "upgrade", "masterpiece", "experience")

MIN_WORDS, MAX_WORDS = 4, 30
# clause shapes, weighted: plain, two adjectives, negated, "i thought", verdict, quoted, "what a"
CLAUSE_KINDS = (0, 0, 0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 5, 6)
POLARITY = {"positive": (POSITIVE_ADJECTIVES, POSITIVE_VERDICTS), "negative": (NEGATIVE_ADJECTIVES, NEGATIVE_VERDICTS)}
OPPOSITE = {"positive": "negative", "negative": "positive"}


def _words(*parts: str) -> str:
    """Join non-empty parts with single spaces; a part starting with "," attaches to the previous word."""
    return " ".join(" ".join(p.split()) for p in parts if p.strip()).replace(" ,", ",")


def _intensified(rng: random.Random, adjective: str) -> str:
    return _words(rng.choice(INTENSIFIERS), adjective)


def _be(subject: str) -> tuple[str, str]:
    """Present and past of "to be" for a subject ("these headphones" are plural)."""
    return ("are", "were") if subject.startswith("these ") else ("is", "was")


def _sentiment_clause(rng: random.Random, label: str) -> str:
    """One clause whose polarity is ``label``."""
    adjectives, verdicts = POLARITY[label]
    other_adjectives, _ = POLARITY[OPPOSITE[label]]
    subject = rng.choice(SUBJECTS)
    be = _be(subject)
    kind = rng.choice(CLAUSE_KINDS)
    if kind == 0:
        return _words(subject, rng.choice(be), _intensified(rng, rng.choice(adjectives)))
    if kind == 1:
        a, b = rng.sample(adjectives, 2)
        return _words(subject, rng.choice(be + ("felt",)), _intensified(rng, a), "and", b)
    if kind == 2:  # negation flips the polarity word: "not good" -> negative
        negation = rng.choice((f"{be[0]} not", f"{be[1]} not"))
        return _words(subject, negation, rng.choice(other_adjectives))
    if kind == 3:
        return _words("i thought", subject, be[1], _intensified(rng, rng.choice(adjectives)))
    if kind == 4:
        return _words(rng.choice(verdicts))
    if kind == 5:
        quoted = f'"{rng.choice(QUOTED_WORDS)}"'
        return _words(subject, "and its so-called", quoted, rng.choice(("felt", "were", "seemed")), rng.choice(adjectives))
    if subject.startswith("these "):
        return _words("what", _intensified(rng, rng.choice(adjectives)), subject.split(" ", 1)[-1])
    described = _intensified(rng, rng.choice(adjectives))
    article = "an" if described[0] in "aeiou" else "a"
    return _words("what", article, described, subject.split(" ", 1)[-1])


def _sentiment_sentence(rng: random.Random, label: str) -> str:
    """A 4..30 word review sentence labelled ``label``."""
    kind = rng.randrange(12)
    if kind < 7:
        body = _sentiment_clause(rng, label)
    elif kind < 11:
        body = _words(_sentiment_clause(rng, label), ", and", _sentiment_clause(rng, label))
    else:  # contrast: the clause after "but" decides
        body = _words(_sentiment_clause(rng, OPPOSITE[label]), ", but", _sentiment_clause(rng, label))
    sentence = _words(rng.choice(OPENERS), body, rng.choice(CLOSERS))
    if len(sentence.split()) > MAX_WORDS:
        sentence = body if len(body.split()) <= MAX_WORDS else _sentiment_clause(rng, label)
    if len(sentence.split()) < MIN_WORDS:
        sentence = _words(sentence, ", and", rng.choice(POLARITY[label][1]))
    return sentence[0].upper() + sentence[1:] + rng.choice((".", ".", ".", "!", ""))


def _unique(rng: random.Random, make: Callable[[random.Random], str], n: int, seen: set[str]) -> list[str]:
    """``n`` generated strings, avoiding repeats where the generator allows it."""
    out: list[str] = []
    for _ in range(n):
        text = make(rng)
        for _attempt in range(20):
            if text not in seen:
                break
            text = make(rng)
        seen.add(text)
        out.append(text)
    return out


def sentiment_rows(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """``n`` (text, label) rows, half positive and half negative, shuffled."""
    seen: set[str] = set()
    rows = [(t, "positive") for t in _unique(rng, lambda r: _sentiment_sentence(r, "positive"), (n + 1) // 2, seen)]
    rows += [(t, "negative") for t in _unique(rng, lambda r: _sentiment_sentence(r, "negative"), n // 2, seen)]
    rng.shuffle(rows)
    return rows


# ---------------------------------------------------------------------------
# intents (banking assistant)
# ---------------------------------------------------------------------------
CARDS = ("card", "debit card", "credit card", "new card", "replacement card", "visa card", "mastercard", "contactless card")
AMOUNTS = ("$20", "$50", "$120", "300 euros", "45 pounds", "1,000 dollars", "75 francs", "250 kroner")
CURRENCIES = ("euros", "dollars", "pounds", "yen", "swiss francs", "norwegian kroner", "pesos", "rupees")
PEOPLE = ("my sister", "my landlord", "a friend", "my son", "my business partner", "Anna", "Tom", "my mum")
MERCHANTS = ("an online shop", "the supermarket", "a hotel", "the airline", "a taxi app", "a clothing store", "the cinema")
PERIODS = ("a week", "ten days", "two weeks", "almost a month", "five days")
PREFIXES = ("", "", "", "hi,", "hello,", "hey,", "good morning,", "excuse me,", "quick question:")
SUFFIXES = ("", "", "", "thanks", "thank you", "please", "asap", "thanks in advance", "any idea?")

INTENT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "card_arrival": (
        "when will my {card} arrive",
        "my {card} still has not arrived",
        "i ordered a {card} {period} ago and it is not here yet",
        "how long does delivery of a {card} take",
        "can you track the {card} you sent me",
        "is my {card} on its way",
        "the {card} you posted never came",
        "i am still waiting for my {card}",
    ),
    "balance": (
        "what is my balance",
        "how much money do i have in my account",
        "show me my current balance",
        "can i check the balance on my {card}",
        "how much is left in my savings",
        "is my balance updated after the payment to {merchant}",
        "tell me how much money is available",
        "what is the balance of my main account",
    ),
    "transfer": (
        "i want to send {amount} to {person}",
        "how do i transfer {amount} to {person}",
        "transfer {amount} to {person} today",
        "my transfer to {person} is still pending",
        "why has my transfer of {amount} not gone through",
        "can i make a bank transfer abroad",
        "how long does a transfer to another bank take",
        "please move {amount} to my savings account",
    ),
    "lost_card": (
        "i lost my {card}",
        "my {card} was stolen",
        "i cannot find my {card} anywhere",
        "someone took my wallet with my {card}",
        "please block my {card} , it is lost",
        "i think i left my {card} at {merchant}",
        "how do i freeze a stolen {card}",
        "my {card} is missing",
    ),
    "exchange_rate": (
        "what is the exchange rate for {currency}",
        "how many {currency} do i get for {amount}",
        "what rate do you use to convert to {currency}",
        "is the exchange rate for {currency} better today",
        "how much is {amount} in {currency}",
        "do you charge extra when converting {currency}",
        "why was the rate for {currency} so bad",
        "can you tell me today's rate for {currency}",
    ),
    "refund": (
        "i want a refund from {merchant}",
        "my refund from {merchant} has not arrived",
        "how long does a refund take",
        "{merchant} said they refunded {amount} but i do not see it",
        "can i get my money back for a cancelled order",
        "where is the refund for {amount}",
        "the refund from {merchant} is missing",
        "i returned an item to {merchant} , when will i be refunded",
    ),
}
INTENTS = tuple(INTENT_TEMPLATES)


def _intent_text(rng: random.Random, intent: str) -> str:
    template = rng.choice(INTENT_TEMPLATES[intent])
    body = template.format(
        card=rng.choice(CARDS), amount=rng.choice(AMOUNTS), currency=rng.choice(CURRENCIES),
        person=rng.choice(PEOPLE), merchant=rng.choice(MERCHANTS), period=rng.choice(PERIODS),
    )
    text = _words(rng.choice(PREFIXES), body, rng.choice(SUFFIXES))
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text + rng.choice(("", "?", ".", "!")) if not text.endswith("?") else text


def intent_rows(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """``n`` (text, category) rows, spread evenly over :data:`INTENTS`, shuffled."""
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    for i, intent in enumerate(INTENTS):
        count = n // len(INTENTS) + (1 if i < n % len(INTENTS) else 0)
        rows += [(t, intent) for t in _unique(rng, lambda r, it=intent: _intent_text(r, it), count, seen)]
    rng.shuffle(rows)
    return rows


# ---------------------------------------------------------------------------
# named entities
# ---------------------------------------------------------------------------
FIRST_NAMES = ("Anna", "Lars", "Maria", "Kenji", "Olu", "Priya", "Jonas", "Sofia", "Ahmed", "Elena", "Tomas", "Grace", "Mei", "Pedro")
LAST_NAMES = ("Berg", "Holm", "Lopez", "Sato", "Adeyemi", "Nair", "Lindqvist", "Rossi", "Haddad", "Novak", "Okafor", "Chen", "Silva")
ORGANISATIONS = (
    "Northwind Bank", "Bluefield Labs", "Acme Corp", "Red Harbor Shipping", "Oslo Energy", "United Grain Board",
    "Kestrel Airways", "Greenline Rail", "Helix Pharma", "Summit Insurance", "Aurora Media", "Nordic Steel",
)
LOCATIONS = (
    "Oslo", "Bergen", "Lisbon", "Nairobi", "Kyoto", "Madrid", "Toronto", "Lagos", "Vienna", "Santiago",
    "New York", "Buenos Aires", "Cape Town", "Hong Kong", "Rio de Janeiro",
)
MISCELLANEOUS = (
    "Norwegian", "European", "Japanese", "Brazilian", "Kenyan", "German", "Canadian",
    "World Cup", "Nobel Prize", "Olympic", "Champions League", "Tour de France",
)
NER_TEMPLATES = (
    "{PER} joined {ORG} in {LOC} last year .",
    "{ORG} opened a new office in {LOC} on Monday .",
    "The {MISC} delegation met {PER} in {LOC} .",
    "{PER} said {ORG} would report results on Friday .",
    "Shares of {ORG} rose 3 percent in {LOC} trading .",
    "{PER} , a {MISC} economist , works for {ORG} .",
    "Fans in {LOC} watched the {MISC} final .",
    "{LOC} beat {LOC} 2-1 in the {MISC} .",
    "{ORG} hired {PER} as chief executive .",
    "{PER} flew from {LOC} to {LOC} on Tuesday .",
    "The {MISC} government praised {ORG} .",
    "{PER} and {PER} won the {MISC} in {LOC} .",
    "Police in {LOC} said nobody was hurt .",
    "{ORG} cut 200 jobs , {PER} told reporters .",
    "Prices fell sharply in {LOC} this week .",
    "{PER} scored twice for {LOC} .",
    "Analysts expect {ORG} to buy {ORG} .",
    "The meeting in {LOC} ended without a deal .",
)


def _entity(rng: random.Random, kind: str) -> str:
    if kind == "PER":
        return rng.choice(FIRST_NAMES) if rng.random() < 0.15 else f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    return rng.choice({"ORG": ORGANISATIONS, "LOC": LOCATIONS, "MISC": MISCELLANEOUS}[kind])


def ner_sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """One sentence as (tokens, IOB2 tags)."""
    tokens: list[str] = []
    tags: list[str] = []
    for piece in rng.choice(NER_TEMPLATES).split():
        kind = piece[1:-1] if piece.startswith("{") and piece.endswith("}") else None
        if kind is None:
            tokens.append(piece)
            tags.append("O")
            continue
        for i, word in enumerate(_entity(rng, kind).split()):
            tokens.append(word)
            tags.append(("B-" if i == 0 else "I-") + kind)
    return tokens, tags


def conll_text(sentences: Iterable[tuple[list[str], list[str]]], doc_every: int = 100) -> str:
    """Two-column CoNLL text with a ``-DOCSTART-`` line before every ``doc_every`` sentences."""
    out = io.StringIO()
    for i, (tokens, tags) in enumerate(sentences):
        if i % doc_every == 0:
            out.write("-DOCSTART- O\n\n")
        out.writelines(f"{token} {tag}\n" for token, tag in zip(tokens, tags))
        out.write("\n")
    return out.getvalue()


def _detokenize(tokens: Sequence[str]) -> str:
    return " ".join(tokens).replace(" ,", ",").replace(" .", ".")


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _write_text(path: Path, text: str) -> Path:
    return _atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("utf-8")))


def _csv_text(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _tsv_text(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    return "\n".join(lines) + "\n"


def _jsonl_text(rows: Iterable[tuple[str, str]], fields: tuple[str, str]) -> str:
    return "".join(json.dumps(dict(zip(fields, row)), ensure_ascii=False) + "\n" for row in rows)


def _split_by_label(rows: list[tuple[str, str]], test_fraction: float) -> tuple[list, list]:
    """Per-label ``1 - test_fraction`` / ``test_fraction`` split, so both halves hold every label."""
    train, test = [], []
    for label in sorted({r[1] for r in rows}):
        members = [r for r in rows if r[1] == label]
        n_test = max(1, round(len(members) * test_fraction))
        test += members[:n_test]
        train += members[n_test:]
    order = {row: i for i, row in enumerate(rows)}
    return sorted(train, key=order.__getitem__), sorted(test, key=order.__getitem__)


def _corpus_lines(rng: random.Random, n: int) -> list[str]:
    lines = [text for text, _ in sentiment_rows(rng, n // 3)]
    lines += [text for text, _ in intent_rows(rng, n // 3)]
    lines += [_detokenize(ner_sentence(rng)[0]) for _ in range(n - len(lines))]
    rng.shuffle(lines)
    return lines


def write_sample_data(
    out_dir: str | os.PathLike, *, seed: int = 0, n_sentiment: int = 600, n_intent: int = 450
) -> dict[str, Path]:
    """Write every sample file into ``out_dir``; returns ``{key: path}``.

    Keys are file stems (``sentiment_train``, ``intent_test``, ``ner_valid``,
    ``corpus``, ...); the extra formats of the sentiment training rows are
    ``sentiment_train_tsv`` and ``sentiment_train_parquet``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths: dict[str, Path] = {}

    sent_train, sent_test = _split_by_label(sentiment_rows(rng, n_sentiment), 0.2)
    paths["sentiment_train"] = _write_text(out / "sentiment_train.csv", _csv_text(("text", "label"), sent_train))
    paths["sentiment_test"] = _write_text(out / "sentiment_test.csv", _csv_text(("text", "label"), sent_test))
    paths["sentiment_train_tsv"] = _write_text(out / "sentiment_train.tsv", _tsv_text(("sentence", "label"), sent_train))
    frame = pd.DataFrame(sent_train, columns=["text", "label"])
    paths["sentiment_train_parquet"] = _atomic_write(
        out / "sentiment_train.parquet", lambda tmp: frame.to_parquet(tmp, engine="pyarrow", index=False)
    )

    int_train, int_test = _split_by_label(intent_rows(rng, n_intent), 0.2)
    paths["intent_train"] = _write_text(out / "intent_train.jsonl", _jsonl_text(int_train, ("text", "category")))
    paths["intent_test"] = _write_text(out / "intent_test.jsonl", _jsonl_text(int_test, ("text", "category")))

    paths["ner_train"] = _write_text(out / "ner_train.conll", conll_text(ner_sentence(rng) for _ in range(300)))
    paths["ner_valid"] = _write_text(out / "ner_valid.conll", conll_text(ner_sentence(rng) for _ in range(80)))

    paths["corpus"] = _write_text(out / "corpus.txt", "\n".join(_corpus_lines(rng, 500)) + "\n")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmos_tf.data.sample", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the sample files into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-sentiment", type=int, default=600)
    parser.add_argument("--n-intent", type=int, default=450)
    args = parser.parse_args(argv)
    paths = write_sample_data(args.out_dir, seed=args.seed, n_sentiment=args.n_sentiment, n_intent=args.n_intent)
    for key, path in paths.items():
        print(f"{key:26s} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
