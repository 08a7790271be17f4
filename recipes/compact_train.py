"""Train the compact SID Llama on an Amazon P5 dataset: embed items, build semantic IDs, train, save.

    python recipes/compact_train.py --config recipes/compact_beauty.yaml [--dataset amazon2014-beauty]

Re-running resumes from the latest ``<output_dir>/checkpoint-<step>``; the best validation model lands in
``<output_dir>/best`` (``CompactRecommender.from_pretrained``), the per-epoch history in
``<output_dir>/trainer_state.json`` and the semantic IDs in ``<output_dir>/sid``. Each of the config's
``channels`` trains the same way in ``<output_dir>/channel-<c>``;
``MultiChannelRecommender.from_pretrained(<output_dir>)`` loads them all and merges their beams.
"""

from __future__ import annotations

import argparse
import logging

import yaml

from genrec.data import load_amazon_p5
from genrec.model.channels import train_channels
from genrec.model.compact import CompactTrainingConfig
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
    train_channels(dataset, config)


if __name__ == "__main__":
    main()
