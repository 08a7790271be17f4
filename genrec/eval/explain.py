"""Explanation metrics: overlap with reference text, review features, diversity and catalog faithfulness.

Text metrics follow the PETER/PEPLER/P5 evaluation code, which the published numbers come from:

* **Tokenisation** (:func:`metric_tokens`): lower-cased; a word (letters and digits, internal apostrophes
  kept) or a single punctuation mark is one token; runs of one punctuation mark collapse ("!!!" -> "!").
  PEPLER's ``postprocessing`` also splits clitics ("do n't"); here ``don't`` stays one token.
* **BLEU-1 / BLEU-4**: corpus-level (n-gram counts summed over all outputs before the precisions and the
  brevity penalty are taken), one reference per output, no smoothing, in percent. Computed by sacrebleu
  with ``tokenize="none"`` over the tokens above; this is the same formula as the NMT ``compute_bleu``
  that PEPLER calls.
* **ROUGE-1 / ROUGE-2 / ROUGE-L**: F-measure of each output against its reference (rouge-score, over the
  same tokens, no stemming), averaged over outputs, in percent, as PEPLER's ``rouge`` averages
  sentence-level scores. (PEPLER's copy counts distinct n-grams and weights ROUGE-L's F by precision/recall;
  rouge-score uses the standard clipped counts and F1, so expect small differences.)

Feature metrics are PEPLER's ``utils.py`` definitions; features are found by whole-word phrase matching
(:class:`~genrec.data.text.PhraseMatcher`), so multi-word features such as "sound quality" count too:

* **FMR**: share of outputs that contain their ground-truth feature.
* **FCR**: distinct features generated over all outputs / size of the feature vocabulary.
* **DIV**: mean over all pairs of outputs of the number of features they share (lower is more diverse).
* **USR**: distinct token sequences / number of outputs.
* **USR (delexicalized)**, ``usr_delex``: USR once every title, brand, category and price band an output
  names is replaced by its kind (:meth:`AttributeVocabulary.delexicalize`). A verbalizer that quotes
  titles has USR near 1 by construction; this counts distinct phrasings instead.

Faithfulness (:func:`check_explanation`): the brands, categories, item titles and price bands an
explanation names, matched against the catalog's vocabulary, must belong to the recommended item or to
the user's history.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from genrec.data.attributes import Attribute, AttributeVocabulary
from genrec.data.dataset import Catalog, Item
from genrec.data.text import MIN_QUOTED_WORDS, PhraseMatcher, normalize_phrase, quotations

# ------------------------------------------------------------------------------------------------
# Text overlap with references
# ------------------------------------------------------------------------------------------------

_METRIC_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|([^\w\s])\1*")


def metric_tokens(text: str) -> list[str]:
    """The tokens BLEU, ROUGE and USR compare (see the module docstring)."""
    text = text.lower().replace("\u2019", "'")
    return [m.group(1) or m.group(0) for m in _METRIC_TOKEN.finditer(text)]


class _Tokenizer:
    """rouge-score's tokenizer interface over :func:`metric_tokens`."""

    def tokenize(self, text: str) -> list[str]:
        return metric_tokens(text)


def _check_pairs(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} explanations but {len(references)} references")
    if not hypotheses:
        raise ValueError("no explanations to score")


def bleu(references: Sequence[str], hypotheses: Sequence[str], max_order: int = 4) -> float:
    """Corpus BLEU-``max_order`` in percent, one reference per hypothesis, no smoothing."""
    from sacrebleu.metrics import BLEU

    _check_pairs(references, hypotheses)
    metric = BLEU(tokenize="none", smooth_method="none", max_ngram_order=max_order)
    hyps = [" ".join(metric_tokens(h)) for h in hypotheses]
    refs = [[" ".join(metric_tokens(r)) for r in references]]
    return float(metric.corpus_score(hyps, refs).score)


def rouge(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure in percent, keyed ``rouge1``, ``rouge2``, ``rougeL``."""
    from rouge_score import rouge_scorer  # imported on use: it pulls in nltk, seconds of import time

    _check_pairs(references, hypotheses)
    keys = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(keys), tokenizer=_Tokenizer())
    totals = dict.fromkeys(keys, 0.0)
    for ref, hyp in zip(references, hypotheses):
        scores = scorer.score(ref, hyp)
        for key in keys:
            totals[key] += scores[key].fmeasure
    return {key: 100.0 * total / len(hypotheses) for key, total in totals.items()}


def unique_sentence_ratio(hypotheses: Sequence[str]) -> float:
    """USR: distinct token sequences / outputs (1.0 when every explanation differs)."""
    if not hypotheses:
        raise ValueError("no explanations to score")
    return len({tuple(metric_tokens(h)) for h in hypotheses}) / len(hypotheses)


def delexicalized_usr(hypotheses: Sequence[str], vocabulary: AttributeVocabulary) -> float:
    """USR over :meth:`AttributeVocabulary.delexicalize`-d outputs: distinct phrasings / outputs."""
    return unique_sentence_ratio([vocabulary.delexicalize(h) for h in hypotheses])


# ------------------------------------------------------------------------------------------------
# Feature metrics (PEPLER)
# ------------------------------------------------------------------------------------------------


def find_features(hypotheses: Sequence[str], features: Iterable[str]) -> list[set[str]]:
    """The set of features (normalized, see :func:`~genrec.data.text.normalize_phrase`) in each output."""
    matcher = PhraseMatcher(features)
    return [set(matcher.find(h)) for h in hypotheses]


def feature_matching_ratio(
    found: Sequence[Collection[str]], reference_features: Sequence[str | Collection[str] | None]
) -> float:
    """FMR: share of outputs that contain their ground-truth feature.

    A reference may be one feature (PEPLER) or several (an item's catalog attributes: any one counts).
    Outputs whose reference has no feature are left out, as PEPLER's ``ignore`` argument does.
    """
    if len(found) != len(reference_features):
        raise ValueError(f"{len(found)} outputs but {len(reference_features)} reference features")
    hits = total = 0
    for fs, ref in zip(found, reference_features):
        wanted = {normalize_phrase(ref)} if isinstance(ref, str) else {normalize_phrase(r) for r in ref or ()}
        wanted.discard("")
        if wanted:
            total += 1
            hits += bool(wanted & set(fs))
    if not total:
        raise ValueError("no output has a reference feature")
    return hits / total


def feature_coverage_ratio(found: Sequence[Collection[str]], num_features: int) -> float:
    """FCR: distinct features generated over all outputs / size of the feature vocabulary."""
    if num_features <= 0:
        raise ValueError(f"num_features must be positive, got {num_features}")
    return len(set().union(*found)) / num_features


def feature_diversity(found: Sequence[Collection[str]]) -> float:
    """DIV: mean over pairs of outputs of ``|features_i & features_j|``; 0.0 with fewer than two outputs.

    Counted per feature (a feature in ``c`` outputs is shared by ``c*(c-1)/2`` pairs), which equals PEPLER's
    double loop but is linear, so it runs on all test users.
    """
    n = len(found)
    if n < 2:
        return 0.0
    counts = Counter(f for fs in found for f in set(fs))
    shared = sum(c * (c - 1) // 2 for c in counts.values())
    return shared / (n * (n - 1) / 2)


# ------------------------------------------------------------------------------------------------
# Faithfulness to the catalog
# ------------------------------------------------------------------------------------------------

Source = Literal["item", "history", "neither"]
# A mention of one of these that belongs to neither the item nor the history is a hallucination; a wrong
# price band makes an explanation unfaithful but is not counted as naming something that is not there.
HALLUCINATION_KINDS: frozenset[str] = frozenset({"brand", "category", "item"})


@dataclass(frozen=True)
class Mention:
    """A phrase found in an explanation, what it can refer to, and whose attribute it is."""

    phrase: str
    attributes: frozenset[Attribute]
    source: Source


@dataclass(frozen=True)
class FaithfulnessResult:
    """The attributes one explanation names, split by whether the item or the history has them."""

    mentions: tuple[Mention, ...]

    @property
    def item_mentions(self) -> tuple[Mention, ...]:
        return tuple(m for m in self.mentions if m.source == "item")

    @property
    def history_mentions(self) -> tuple[Mention, ...]:
        return tuple(m for m in self.mentions if m.source == "history")

    @property
    def unsupported(self) -> tuple[Mention, ...]:
        return tuple(m for m in self.mentions if m.source == "neither")

    @property
    def faithful(self) -> bool:
        """Every named attribute belongs to the item or the history (vacuously true when none is named)."""
        return not self.unsupported

    @property
    def hallucinated(self) -> bool:
        """Names a brand, category or item that neither the item nor the history has."""
        return any(a.kind in HALLUCINATION_KINDS for m in self.unsupported for a in m.attributes)


def quoted_titles(explanation: str, items: Sequence[Item]) -> tuple[str, list[tuple[str, Item]]]:
    """Quotations in ``explanation`` that copy one of ``items``' titles verbatim, whole or its beginning of
    at least two words (an unclosed last quotation counts), and the text with them blanked out.

    Such a quotation names that item, whatever words it contains: "Tree Hut Shea Sugar Scrub" of "Tree Hut
    Shea Sugar Scrub, Hawaiian Kukui, 18 Ounce" does not name the brand "Shea".
    """
    titles = [(item.title.strip(), item) for item in items]
    found, rest, last = [], [], 0
    for span in quotations(explanation, [t for t, _ in titles]):
        quote = span.quoted.strip()
        long_enough = len(quote.split()) >= MIN_QUOTED_WORDS
        for title, item in titles:
            if quote and title.startswith(quote) and (quote == title or long_enough):
                found.append((quote, item))
                rest += [explanation[last : span.start], " "]
                last = span.end
                break
    return "".join(rest) + explanation[last:], found


def check_explanation(
    explanation: str, item: Item, history: Sequence[Item], vocabulary: AttributeVocabulary
) -> FaithfulnessResult:
    """Which attributes ``explanation`` names, and whether each belongs to ``item``, ``history`` or neither.

    A phrase that can refer to several attributes (a title that is also a category) is supported when any
    of them belongs to the item or the history; the item takes precedence over the history. A quotation
    that copies the beginning of the item's or a history item's title names that item
    (:func:`quoted_titles`); everything else is matched against the vocabulary.
    """
    own = vocabulary.attributes_of(item)
    past = vocabulary.attributes_of_all(history)
    rest, quotes = quoted_titles(explanation, [item, *history])
    mentions = [
        Mention(
            normalize_phrase(quote),
            frozenset({Attribute("item", quoted.id)}),
            "item" if quoted is item else "history",
        )
        for quote, quoted in quotes
    ]
    for phrase, attributes in vocabulary.find(rest):
        source: Source = "item" if attributes & own else "history" if attributes & past else "neither"
        mentions.append(Mention(phrase, attributes, source))
    return FaithfulnessResult(tuple(mentions))


def check_explanations(
    texts: Sequence[str],
    histories: Sequence[Sequence[int]],
    items: Sequence[int],
    catalog: Catalog,
    vocabulary: AttributeVocabulary,
) -> list[FaithfulnessResult]:
    """:func:`check_explanation` of each text for its ``(history, item)`` pair of catalog indices."""
    if not len(texts) == len(histories) == len(items):
        raise ValueError(f"{len(texts)} explanations for {len(histories)} histories and {len(items)} items")
    return [
        check_explanation(text, catalog[i], [catalog[j] for j in h], vocabulary)
        for text, h, i in zip(texts, histories, items)
    ]


def faithfulness_metrics(results: Sequence[FaithfulnessResult]) -> dict[str, float]:
    """``faithfulness`` (share of explanations that name only attributes of the item or history) and
    ``hallucination_rate`` (share naming a brand, category or item found in neither)."""
    if not results:
        raise ValueError("no explanations to score")
    return {
        "faithfulness": sum(r.faithful for r in results) / len(results),
        "hallucination_rate": sum(r.hallucinated for r in results) / len(results),
    }


# ------------------------------------------------------------------------------------------------
# Everything at once
# ------------------------------------------------------------------------------------------------


def explanation_metrics(
    hypotheses: Sequence[str],
    references: Sequence[str] | None = None,
    features: Iterable[str] | None = None,
    reference_features: Sequence[str | Collection[str] | None] | None = None,
    faithfulness: Sequence[FaithfulnessResult] | None = None,
    vocabulary: AttributeVocabulary | None = None,
) -> dict[str, float]:
    """All metrics the inputs allow, under the keys the bench JSONs use.

    Always ``usr``; with ``references``: ``bleu1``, ``bleu4``, ``rouge1``, ``rouge2``, ``rougeL``
    (percent); with ``features``: ``fcr`` and ``div``, plus ``fmr`` given ``reference_features``; with
    ``faithfulness`` results (one per hypothesis): ``faithfulness`` and ``hallucination_rate``; with a
    catalog ``vocabulary``: ``usr_delex``.
    """
    out = {"usr": unique_sentence_ratio(hypotheses)}
    if vocabulary is not None:
        out["usr_delex"] = delexicalized_usr(hypotheses, vocabulary)
    if references is not None:
        out["bleu1"] = bleu(references, hypotheses, max_order=1)
        out["bleu4"] = bleu(references, hypotheses, max_order=4)
        out.update(rouge(references, hypotheses))
    if features is not None:
        vocabulary = sorted({normalize_phrase(f) for f in features} - {""})
        found = find_features(hypotheses, vocabulary)
        out["fcr"] = feature_coverage_ratio(found, len(vocabulary))
        out["div"] = feature_diversity(found)
        if reference_features is not None:
            out["fmr"] = feature_matching_ratio(found, reference_features)
    elif reference_features is not None:
        raise ValueError("reference_features need the feature vocabulary (features=...)")
    if faithfulness is not None:
        if len(faithfulness) != len(hypotheses):
            raise ValueError(f"{len(hypotheses)} explanations but {len(faithfulness)} faithfulness results")
        out.update(faithfulness_metrics(faithfulness))
    return out
