"""Reference recommenders every generative model is compared against."""

from genrec.baselines.popularity import Popularity
from genrec.baselines.sasrec import SASRec, SASRecConfig
from genrec.baselines.sasrec_train import train_sasrec

__all__ = ["Popularity", "SASRec", "SASRecConfig", "train_sasrec"]
