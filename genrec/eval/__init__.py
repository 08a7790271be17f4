"""Evaluation: full-ranking leave-one-out Recall@K / NDCG@K for score matrices and ranked lists."""

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
from genrec.eval.recommender import Recommender, evaluate_recommender

__all__ = [
    "Recommender",
    "catalog_coverage",
    "evaluate_lists",
    "evaluate_recommender",
    "evaluate_scores",
    "evaluate_topk",
    "metrics_from_ranks",
    "target_ranks",
    "topk_ranks",
    "valid_item_rate",
]
