"""Supervised fine-tuning of an LLM recommender from a YAML recipe.

    python recipes/sft.py --config recipes/synthetic_smollm2_lora.yaml
    accelerate launch --config_file recipes/accelerate/cpu.yaml recipes/sft.py --config recipes/X.yaml
    python recipes/sft.py --config recipes/X.yaml --resume --max_steps 500 --set lora.r=16

Any ``section.field`` of the recipe can be overridden with ``--set``; the common ones have their own flags.
"""

from __future__ import annotations

import argparse
import logging

from genrec.train import SFTRecipe, train_sft


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--config", required=True, help="YAML recipe (see recipes/*.yaml)")
    parser.add_argument("--output_dir", help="override train.output_dir")
    parser.add_argument("--max_steps", type=int, help="override train.max_steps")
    parser.add_argument("--resume", action="store_true", help="continue from output_dir's last checkpoint")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="override any recipe field"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    recipe = SFTRecipe.from_yaml(args.config)
    if args.output_dir:
        recipe.override("train.output_dir", args.output_dir)
    if args.max_steps is not None:
        recipe.override("train.max_steps", args.max_steps)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects SECTION.FIELD=VALUE, got {item!r}")
        recipe.override(key.strip(), value)
    train_sft(recipe, resume=args.resume)


if __name__ == "__main__":
    main()
