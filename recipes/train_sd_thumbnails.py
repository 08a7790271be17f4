"""Personalize a Stable Diffusion 1.5-class checkpoint with user soft prompts, from a YAML recipe.

accelerate launch recipes/train_sd_thumbnails.py --config recipes/sd_thumbnails_gpu.yaml \\
    --set model=/models/stable-diffusion-v1-5
accelerate launch recipes/train_sd_thumbnails.py --config recipes/sd_thumbnails_gpu.yaml \\
    --set model=/models/stable-diffusion-v1-5 --set training.steps=20000 --resume

Only the soft prompt trains; it lands in ``<output_dir>/soft_prompt``. See docs/thumbnails.md.
"""

from __future__ import annotations

import argparse
import logging

from genrec.diffusion.sd_recipe import SDThumbnailRecipe, run_sd_recipe
from genrec.utils import configure_threads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="recipe YAML (model, data, ..., training)")
    parser.add_argument("--resume", action="store_true", help="continue from <output_dir>/checkpoint")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override (or model=PATH)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: $GENREC_THREADS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    configure_threads(args.threads)
    run_sd_recipe(SDThumbnailRecipe.from_yaml(args.config, args.set), resume=args.resume)


if __name__ == "__main__":
    main()
