"""Train the compact SID Llama on an Amazon P5 dataset: embed items, build semantic IDs, train, save.

    python recipes/compact_train.py --config recipes/compact_beauty.yaml [--dataset amazon2014-beauty]

Re-running resumes from the latest ``<output_dir>/checkpoint-<step>``; the best validation model lands in
``<output_dir>/best`` (``CompactRecommender.from_pretrained``), the per-epoch history in
``<output_dir>/trainer_state.json`` and the semantic IDs in ``<output_dir>/sid``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

from genrec.data import load_amazon_p5
from genrec.model.compact import CompactTrainingConfig, train_compact
from genrec.sid import load_or_build_semantic_ids
from genrec.utils import shared_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="recipes/compact_beauty.yaml")
    parser.add_argument("--dataset", default="amazon2014-beauty")
    parser.add_argument("--output-dir", help="overrides output_dir from the config")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with open(args.config, encoding="utf-8") as fh:
        config = CompactTrainingConfig.from_dict(yaml.safe_load(fh))
    if args.output_dir:
        config.output_dir = args.output_dir
    dataset = load_amazon_p5(shared_dataset(args.dataset))
    sid = load_or_build_semantic_ids(dataset, Path(config.output_dir) / "sid", config.sid)
    item_tokens = [sid.item_tokens(i) for i in range(len(dataset.catalog))]
    train_compact(dataset, item_tokens, config)


if __name__ == "__main__":
    main()
