"""Evaluation: full-ranking leave-one-out Recall@K / NDCG@K, and explanation metrics (:mod:`.explain`)."""

from genrec.eval.bootstrap import bootstrap_interval
from genrec.eval.explain import (
    AttributeVocabulary,
    FaithfulnessResult,
    check_explanation,
    check_explanations,
    explanation_metrics,
    faithfulness_metrics,
)
from genrec.eval.metrics import (
    catalog_coverage,
    evaluate_lists,
    evaluate_scores,
    evaluate_topk,
    metrics_from_ranks,
    target_ranks,
    topk_ranks,
    valid_item_rate,
)
from genrec.eval.predictions import load_predictions, save_predictions
from genrec.eval.recommender import Recommender, evaluate_recommender

__all__ = [
    "AttributeVocabulary",
    "FaithfulnessResult",
    "check_explanation",
    "check_explanations",
    "explanation_metrics",
    "faithfulness_metrics",
    "Recommender",
    "bootstrap_interval",
    "catalog_coverage",
    "evaluate_lists",
    "evaluate_recommender",
    "evaluate_scores",
    "evaluate_topk",
    "metrics_from_ranks",
    "target_ranks",
    "topk_ranks",
    "valid_item_rate",
    "load_predictions",
    "save_predictions",
]
