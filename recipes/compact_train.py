"""Train the compact SID Llama on an Amazon P5 dataset: embed items, build semantic IDs, train, save.

    python recipes/compact_train.py --config recipes/compact_beauty.yaml [--dataset amazon2014-beauty]

Re-running resumes from the latest ``<output_dir>/checkpoint-<step>``; the best validation model lands in
``<output_dir>/best`` (``CompactRecommender.from_pretrained``), the per-epoch history in
``<output_dir>/trainer_state.json`` and the semantic IDs in ``<output_dir>/sid``. Each of the config's
``channels`` trains the same way in ``<output_dir>/channel-<c>``;
``MultiChannelRecommender.from_pretrained(<output_dir>)`` loads them all and merges their beams. The merged
recommender is saved in ``<output_dir>/recommender`` for ``genrec recommend <output_dir>/recommender <items>``
and ``GenerativeRecommender.from_pretrained``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml

from genrec.data import load_amazon_p5
from genrec.model import GenerativeRecommender
from genrec.model.channels import train_channels
from genrec.model.compact import CompactTrainingConfig
from genrec.sid import SemanticIDs
from genrec.utils import shared_dataset

logger = logging.getLogger(__name__)


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
    merged = train_channels(dataset, config)
    out = Path(config.output_dir)
    sid = SemanticIDs.from_pretrained(out / "sid", catalog=dataset.catalog)  # channel 0's: the prompts' codes
    folder = GenerativeRecommender.from_compact(merged, dataset.catalog, sid).save_pretrained(
        out / "recommender"
    )
    logger.info("saved %s: genrec recommend %s <item ids>", folder, folder)


if __name__ == "__main__":
    main()
