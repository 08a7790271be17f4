"""Train personalized thumbnails from a YAML recipe.

python recipes/train_thumbnails.py --config recipes/thumbnails_synthetic.yaml
accelerate launch recipes/train_thumbnails.py --config recipes/thumbnails_ml1m.yaml --resume
python recipes/train_thumbnails.py --config recipes/thumbnails_ml1m.yaml --set training.train_steps=100
"""

from __future__ import annotations

import argparse
import logging

from genrec.diffusion.recipe import ThumbnailRecipe, run_recipe
from genrec.utils import configure_threads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", required=True, help="recipe YAML (data, item_text, user_encoder, training)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in output_dir"
    )
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: $GENREC_THREADS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    configure_threads(args.threads)
    run_recipe(ThumbnailRecipe.from_yaml(args.config, args.set), resume=args.resume)


if __name__ == "__main__":
    main()
