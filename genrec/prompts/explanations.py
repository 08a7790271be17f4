"""Where explanation training targets come from: one function per source, each over training pairs only.

A training pair is a window of a user's TRAINING sequence (``seq[:-2]``) and the item that follows it, so
validation and test items never appear in an explanation example:

* :func:`grounded_explanations`: the catalog attributes the item has and shares with the history,
  verbalized (:func:`~genrec.prompts.grounding.verbalize_explanation`). For catalogs without reviews.
* :func:`review_explanations`: the sentence of the user's own review of the item that names an item
  feature (PEPLER), with features mined from the reviews of training pairs only.
* :func:`genrec.train.teacher.teacher_explanations`: a local instruct model's explanations, kept only when
  the faithfulness checker passes them (it needs the model, so it lives with training).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from genrec.data.amazon import Review
from genrec.data.attributes import price_bands_of
from genrec.data.dataset import SequenceDataset
from genrec.data.reviews import FeatureVocabulary, extract_features, select_target
from genrec.prompts.examples import sliding_windows
from genrec.prompts.grounding import verbalize_explanations
from genrec.utils import get_logger

logger = get_logger(__name__)

# Explanation prompts show (and grounded targets count) the user's most recent items only: enough to give
# a reason, and a prompt that lists every item's attributes stays a few hundred tokens.
EXPLANATION_HISTORY = 5


@dataclass(frozen=True)
class ExplanationExample:
    """A history window (dense indices, oldest first), the item after it, and the explanation to train on."""

    history: np.ndarray
    item: int
    explanation: str


def training_pairs(
    dataset: SequenceDataset, max_history: int = EXPLANATION_HISTORY
) -> Iterator[tuple[int, np.ndarray, int]]:
    """``(user index, history window, next item)`` for every position of every training sequence."""
    histories, targets, owners = sliding_windows(dataset.train_sequences(), max_history=max_history)
    for history, item, user in zip(histories, targets.tolist(), owners.tolist()):
        yield user, history, item


def grounded_explanations(
    dataset: SequenceDataset, max_history: int = EXPLANATION_HISTORY
) -> list[ExplanationExample]:
    """Catalog-grounded targets for every training pair. An item with little metadata gets a shorter
    target, never an invented one (see :mod:`genrec.prompts.grounding`)."""
    pairs = [(history, item) for _, history, item in training_pairs(dataset, max_history)]
    texts = verbalize_explanations(
        dataset.catalog, [h for h, _ in pairs], [i for _, i in pairs], price_bands_of(dataset.catalog)
    )
    return [ExplanationExample(h, i, text) for (h, i), text in zip(pairs, texts)]


def training_review_features(
    dataset: SequenceDataset, reviews: Iterable[Review], min_df: int = 5
) -> FeatureVocabulary:
    """Features mined from the reviews of training pairs only (items of the users' training sequences), so
    validation and test reviews never shape them (:func:`~genrec.data.reviews.extract_features`)."""
    catalog = dataset.catalog
    by_pair = {(r.user, r.item): r for r in reviews}
    train_reviews = [
        by_pair[key]
        for user, seq in zip(dataset.users, dataset.train_sequences())
        for i in seq.tolist()
        if (key := (user, catalog[i].id)) in by_pair
    ]
    return extract_features(train_reviews, min_df=min_df)


def review_explanations(
    dataset: SequenceDataset,
    reviews: Iterable[Review],
    max_history: int = EXPLANATION_HISTORY,
    min_df: int = 5,
) -> list[ExplanationExample]:
    """Review-sentence targets for the training pairs whose user reviewed the item and wrote a sentence
    naming a feature (:func:`~genrec.data.reviews.select_target`); other pairs have none.

    Features come from the reviews of items in the users' training sequences only
    (:func:`training_review_features`).
    """
    catalog = dataset.catalog
    by_pair = {(r.user, r.item): r for r in reviews}
    vocabulary = training_review_features(dataset, by_pair.values(), min_df)
    out = []
    pairs = list(training_pairs(dataset, max_history))
    for user, history, item in pairs:
        review = by_pair.get((dataset.users[user], catalog[item].id))
        target = select_target(review, vocabulary) if review is not None else None
        if target is not None:
            out.append(ExplanationExample(history, item, target.sentence))
    logger.info("review explanation targets for %d of %d training pairs", len(out), len(pairs))
    return out
