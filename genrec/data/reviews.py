"""Review-derived explanation targets, the PEPLER setting: item features mined from training reviews, and
for each (user, item) review the sentence of the user's own text that mentions one.

PETER/PEPLER take features from Sentires, a Java phrase-level sentiment tool. This is a light stand-in
with no tagger or extra dependency, built on one observation: in review English an article or possessive
("the", "a", "my", ...) is followed by a noun phrase. So:

1. **Sentences**: review text split after ``.``, ``!``, ``?`` and at line breaks (:func:`split_sentences`).
2. **Candidates**: after each determiner, skip up to two opinion or generic words ("great", "little",
   "product"), then take the run of at most two content words (alphabetic, 3+ letters; not a stopword,
   opinion, generic or frequent verb word, nor an -ly adverb). Its last word is a unigram candidate, the
   two words a bigram candidate: "the sound quality is" gives "quality" and "sound quality"; "a great
   little tuner" gives "tuner".
3. **Features**: candidates seen in at least ``min_df`` training reviews and in at most ``max_df`` of them
   (document frequency), counted over the **training split only**, so test text never shapes the features.

A target is the first sentence (4 to 30 words) of the review that names a feature the item is known for
(a feature of its training reviews), else the first that names any feature; PEPLER likewise keeps one
(feature, sentence) pair per review. Reviews with no such sentence have no target.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genrec.data.amazon import Review, iter_reviews
from genrec.data.dataset import SequenceDataset
from genrec.data.text import STOPWORDS, PhraseMatcher, word_tokens
from genrec.errors import DataFormatError
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)

# Words that open a noun phrase. Demonstratives ("this works") and "its" (often typed for "it's") are left
# out: they are followed by verbs and adjectives too often.
DETERMINERS = frozenset("a an the my your our their".split())
# Opinion, degree and generic words: they may sit inside a noun phrase but are never a feature themselves.
NON_FEATURE_WORDS = frozenset(
    """able actual ago amazing around awesome bad bargain best better big bit bunch cheap cheaper
    cool couple day days decent different easy end excellent extra fact fantastic few fine first
    free friend full good great happy heavy high huge idea item items job kind last least less let
    little long longer lot lots low many matter never new next nice number old ones opinion other
    overall past perfect place plus point poor pretty product products purchase quite real really
    reason rest review reviews right second several short simple small solid son sort star stars
    such super sure terrible thing things time times top total type way well whole wonderful worth
    wrong year years""".split()
)
# Frequent review verbs, which end a noun phrase ("the tuner works great" -> "tuner").
VERBS = frozenset(
    """bought buy came come comes did does find found get gets getting give go goes going got had
    has have keep know like liked love loved made make makes need needed needs ordered play playing
    put said say see seems take think tried try use used uses using want wanted went work worked
    works""".split()
)

MIN_SENTENCE_WORDS = 4
MAX_SENTENCE_WORDS = 30

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*[\r\n]+\s*")


def read_reviews(path: str | Path, format: str = "auto") -> list[Review]:
    """Reviews in file order, checked for what targets rely on: one review per (user, item) and ratings
    in 1..5. Errors name the file and line."""
    path = Path(path)
    reviews: list[Review] = []
    first_line: dict[tuple[str, str], int] = {}
    for number, review in iter_reviews(path, format):
        key = (review.user, review.item)
        if key in first_line:
            raise DataFormatError(
                f"second review of item {review.item!r} by user {review.user!r} (first on line "
                f"{first_line[key]})",
                path,
                number,
            )
        first_line[key] = number
        if review.rating is not None and not 1 <= review.rating <= 5:
            raise DataFormatError(f"rating must be between 1 and 5, got {review.rating:g}", path, number)
        reviews.append(review)
    return reviews


def dataset_reviews(dataset: SequenceDataset, path: str | Path | None = None) -> list[Review]:
    """The reviews behind ``dataset``'s interactions, read from ``path`` or, by default, from the review
    dump the dataset was built from (``dataset.source``: :func:`~genrec.data.load_amazon_reviews` sets it,
    so ``load_dataset("instruments")`` needs no path). Reviews of pairs the dataset dropped (k-core) are
    left out."""
    path = path if path is not None else dataset.source
    if path is None:
        raise DataFormatError(
            f"dataset {dataset.name!r} has no source file; give the reviews' path "
            "(recipe: data.explanation_reviews)"
        )
    if not Path(path).is_file():
        raise DataFormatError(
            "not a review file; give the reviews' path (recipe: data.explanation_reviews)", path
        )
    pairs = {
        (user, dataset.catalog[i].id)
        for user, seq in zip(dataset.users, dataset.sequences)
        for i in seq.tolist()
    }
    reviews = [r for r in read_reviews(path) if (r.user, r.item) in pairs]
    logger.info("%s: reviews for %d of %d interactions", path, len(reviews), dataset.num_interactions)
    return reviews


@dataclass(frozen=True)
class ReviewSplit:
    """Chronological leave-one-out per user: last review is test, second-to-last validation."""

    train: list[Review]
    valid: list[Review]
    test: list[Review]


def split_reviews(reviews: Sequence[Review]) -> ReviewSplit:
    """Per user, sort by time (stable: ties keep input order, as the sequence loaders do); the last review
    is test, the one before validation. Users with fewer than three reviews are training only."""
    per_user: dict[str, list[Review]] = defaultdict(list)
    for review in reviews:
        per_user[review.user].append(review)
    train: list[Review] = []
    valid: list[Review] = []
    test: list[Review] = []
    for user_reviews in per_user.values():
        ordered = sorted(user_reviews, key=lambda r: r.time)
        if len(ordered) < 3:
            train.extend(ordered)
            continue
        train.extend(ordered[:-2])
        valid.append(ordered[-2])
        test.append(ordered[-1])
    return ReviewSplit(train, valid, test)


def split_sentences(text: str) -> list[str]:
    """Sentences of a review, stripped, empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _is_content(word: str) -> bool:
    """A word that can be (part of) a feature: alphabetic, 3+ letters, not a function, opinion or verb word
    and not an adverb in -ly."""
    if not word.isalpha() or len(word) < 3 or word.endswith("ly"):
        return False
    return word not in STOPWORDS and word not in NON_FEATURE_WORDS and word not in VERBS


def feature_candidates(tokens: Sequence[str]) -> set[str]:
    """Unigram and bigram feature candidates of one sentence's word tokens (step 2 of the module doc)."""
    out: set[str] = set()
    for i, token in enumerate(tokens):
        if token not in DETERMINERS:
            continue
        j = i + 1
        while j < len(tokens) and j <= i + 2 and tokens[j] in NON_FEATURE_WORDS:
            j += 1
        run = []
        while j < len(tokens) and len(run) < 2 and _is_content(tokens[j]):
            run.append(tokens[j])
            j += 1
        if run:
            out.add(run[-1])
            out.add(" ".join(run))
    return out


@dataclass(frozen=True)
class FeatureVocabulary:
    """Features mined from training reviews, with the features each item's and user's reviews mention."""

    document_frequency: dict[str, int]
    item_features: dict[str, frozenset[str]]
    user_features: dict[str, frozenset[str]]
    _matcher: PhraseMatcher = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_matcher", PhraseMatcher(self.document_frequency))

    @property
    def features(self) -> list[str]:
        """Features, most frequent first (ties alphabetical)."""
        return sorted(self.document_frequency, key=lambda f: (-self.document_frequency[f], f))

    def find(self, text: str | Sequence[str]) -> list[str]:
        """Features named in ``text`` in order (longest match first: "sound quality", not "quality")."""
        return self._matcher.find(text)


def extract_features(
    train_reviews: Iterable[Review], min_df: int = 5, max_df: float = 0.5
) -> FeatureVocabulary:
    """Features of the training reviews (step 3 of the module doc). ``max_df`` is a share of reviews."""
    if min_df < 1 or not 0 < max_df <= 1:
        raise ValueError(f"need min_df >= 1 and 0 < max_df <= 1, got min_df={min_df}, max_df={max_df}")
    reviews = list(train_reviews)
    tokenized = [[word_tokens(s) for s in split_sentences(r.text)] for r in reviews]
    df: Counter[str] = Counter()
    for sentences in tokenized:
        df.update(set().union(*(feature_candidates(tokens) for tokens in sentences)))
    limit = max_df * len(reviews)
    kept = {f: n for f, n in df.items() if min_df <= n <= limit}
    matcher = PhraseMatcher(kept)
    per_item: dict[str, set[str]] = defaultdict(set)
    per_user: dict[str, set[str]] = defaultdict(set)
    for review, sentences in zip(reviews, tokenized):
        found = {f for tokens in sentences for f in matcher.find(tokens)}
        per_item[review.item] |= found
        per_user[review.user] |= found
    logger.info("%d features from %d training reviews (min_df=%d)", len(kept), len(reviews), min_df)
    return FeatureVocabulary(
        kept,
        {k: frozenset(v) for k, v in per_item.items()},
        {k: frozenset(v) for k, v in per_user.items()},
    )


@dataclass(frozen=True)
class ExplanationTarget:
    """The explanation for one (user, item) review: a sentence of it, and the feature it names."""

    user: str
    item: str
    rating: float | None
    time: float
    sentence: str
    feature: str
    features: tuple[str, ...]
    summary: str


def select_target(
    review: Review,
    vocabulary: FeatureVocabulary,
    min_words: int = MIN_SENTENCE_WORDS,
    max_words: int = MAX_SENTENCE_WORDS,
) -> ExplanationTarget | None:
    """The review's first sentence naming one of the item's known features, else its first sentence
    naming any feature; ``None`` when no sentence of ``min_words``..``max_words`` words names one."""
    known = vocabulary.item_features.get(review.item, frozenset())
    fallback: ExplanationTarget | None = None
    for sentence in split_sentences(review.text):
        tokens = word_tokens(sentence)
        if not min_words <= len(tokens) <= max_words:
            continue
        features = tuple(dict.fromkeys(vocabulary.find(tokens)))
        if not features:
            continue
        of_item = [f for f in features if f in known]
        target = ExplanationTarget(
            review.user,
            review.item,
            review.rating,
            review.time,
            sentence,
            (of_item or features)[0],
            features,
            review.summary,
        )
        if of_item:
            return target
        fallback = fallback or target
    return fallback


def explanation_targets(reviews: Iterable[Review], vocabulary: FeatureVocabulary) -> list[ExplanationTarget]:
    """Targets of the reviews that have one, in input order."""
    reviews = list(reviews)
    targets = [t for t in (select_target(r, vocabulary) for r in reviews) if t is not None]
    logger.info("explanation targets for %d of %d reviews", len(targets), len(reviews))
    return targets
