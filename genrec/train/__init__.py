"""Supervised fine-tuning of LLM recommenders with trl: recipe dataclasses, trainer, stage runner."""

from genrec.train.config import DataArgs, ModelArgs, SFTRecipe, SIDArgs, TrainArgs
from genrec.train.loss import RestrictedVocab, answer_nll
from genrec.train.sft import (
    build_recommender,
    build_trainer,
    load_or_build_sid,
    load_recipe_data,
    train_sft,
)
from genrec.train.trainer import GenRecSFTTrainer

__all__ = [
    "DataArgs",
    "GenRecSFTTrainer",
    "ModelArgs",
    "RestrictedVocab",
    "SFTRecipe",
    "SIDArgs",
    "TrainArgs",
    "answer_nll",
    "build_recommender",
    "build_trainer",
    "load_or_build_sid",
    "load_recipe_data",
    "train_sft",
]
