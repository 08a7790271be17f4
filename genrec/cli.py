"""The ``genrec`` command line. Each subcommand is a thin layer over the Python API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: $GENREC_THREADS or idle CPUs)"
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from genrec.demo import DemoConfig, run_demo

    cfg = DemoConfig(output_dir=Path(args.output_dir), quick=args.quick, seed=args.seed, threads=args.threads)
    report = run_demo(cfg)
    print(f"report: {report}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from genrec.data import dataset_stats, load_dataset, plot_length_histogram

    ds = load_dataset(args.dataset)
    stats = dataset_stats(ds)
    print(json.dumps(stats, indent=2, default=float))
    if args.plot:
        print(f"histogram: {plot_length_histogram(ds, args.plot)}")
    return 0


def _cmd_sid(args: argparse.Namespace) -> int:
    from genrec.data import load_dataset
    from genrec.sid import SemanticIDSpec, build_dataset_semantic_ids
    from genrec.sid.multimodal import parse_modality_map
    from genrec.utils import configure_threads

    configure_threads(args.threads)
    modalities = [m.strip() for m in args.modalities.split(",") if m.strip()]
    per_modality = args.layout == "per-modality"
    spec = SemanticIDSpec(
        method=args.method,
        levels=args.levels,
        codebook_size=args.codebook_size,
        embed_model=args.model,
        seed=args.seed,
        modalities=modalities,
        layout="per_modality" if per_modality else "fused",
        modality_levels=parse_modality_map(args.modality_levels, int) if per_modality else {},
        modality_weights=parse_modality_map(args.modality_weights),
        image_encoder=args.image_encoder,
        behaviour_dim=args.behaviour_dim,
        behaviour_window=args.behaviour_window,
        align_behaviour=args.align_behaviour,
        balanced_last_level=args.balanced_last_level,
        impute_missing=args.impute_missing,
    )
    sid = build_dataset_semantic_ids(load_dataset(args.dataset), spec)
    sid.save_pretrained(args.output_dir)
    print(json.dumps(sid.diagnostics, indent=2, default=float))
    print(f"saved: {args.output_dir}")
    return 0


def _cmd_sasrec(args: argparse.Namespace) -> int:
    from genrec.baselines import Popularity, SASRecConfig, train_sasrec
    from genrec.data import load_dataset
    from genrec.eval import evaluate_recommender

    ds = load_dataset(args.dataset)
    cfg = SASRecConfig(epochs=args.epochs, num_threads=args.threads, seed=args.seed)
    model = train_sasrec(ds, cfg, output_dir=args.output_dir)
    test = ds.test_examples()
    rows = {
        "popularity": evaluate_recommender(Popularity().fit(ds), test),
        "sasrec": evaluate_recommender(model, test),
    }
    print(json.dumps(rows, indent=2, default=float))
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from genrec.data import load_dataset
    from genrec.model import GenerativeRecommender

    catalog = load_dataset(args.dataset).catalog if args.dataset else None  # default: the saved catalog
    from genrec.model.explain import ExplanationConfig

    rec = GenerativeRecommender.from_pretrained(args.model_dir, catalog)
    result = rec.generate(
        [args.history],
        num_items=args.num_items,
        num_beams=args.num_beams,
        explain=args.explain,
        explanation=ExplanationConfig(max_new_tokens=args.max_new_tokens),
        explainer=args.explainer,
        item_weight=args.item_weight,
    )[0]
    for rank, (item_id, title, score) in enumerate(zip(result.item_ids, result.titles, result.scores), 1):
        print(f"{rank:>2}. {item_id:<12} {score:8.3f}  {title}")
        if args.explain:
            print(f"    {result.explanations[rank - 1]}")
    return 0


def _cmd_thumbnails(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image, UnidentifiedImageError

    from genrec.diffusion import PersonalizedThumbnailPipeline
    from genrec.errors import EmptyHistoryError
    from genrec.utils.io import atomic_write

    if not args.history and not args.unconditional:
        raise EmptyHistoryError(
            "no history item ids given; pass some, or --unconditional for the unconditional branch"
        )
    if args.history and args.unconditional:
        raise ValueError("--unconditional takes no history item ids")
    if args.image and not args.item:
        raise ValueError("--image starts an item's variant from its picture: give the item with --item")
    start = None
    if args.image:
        try:
            with Image.open(args.image) as img:
                start = img.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"{args.image}: cannot decode the image ({err})") from None
    pipe = PersonalizedThumbnailPipeline.from_pretrained(args.pipeline_dir)
    images = pipe(
        user_history=args.history or None,
        item=args.item,
        image=start,
        strength=args.strength if start is not None else 1.0,
        user_guidance_scale=args.user_guidance,
        item_guidance_scale=args.item_guidance,
        num_inference_steps=args.steps,
        num_images=args.num_images,
        generator=torch.Generator().manual_seed(args.seed),
    ).images
    out = Path(args.output_dir)
    for i, image in enumerate(images):
        with atomic_write(out / f"thumbnail_{i}.png", "wb") as fh:
            image.save(fh, format="PNG")
    print(f"wrote {len(images)} thumbnails to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genrec",
        description="Generative recommendation with LLMs: semantic IDs, LoRA-tuned recommenders, "
        "trie-constrained decoding and personalized thumbnails.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="end-to-end demo on the built-in synthetic catalog (no download)")
    p.add_argument("--output-dir", default="demo_output", help="where the report and artifacts go")
    p.add_argument("--quick", action="store_true", help="smaller sizes and budgets (about a minute)")
    p.add_argument("--seed", type=int, default=0)
    _add_threads(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("stats", help="dataset statistics (users, items, interactions, lengths)")
    p.add_argument("dataset", help="short name (beauty, ml1m-posters, synthetic, ...) or a path")
    p.add_argument("--plot", help="write a sequence-length histogram PNG here")
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser("sid", help="build semantic IDs for a dataset's items")
    p.add_argument("dataset")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--method", choices=["rqkmeans", "rqvae"], default="rqkmeans")
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--codebook-size", type=int, default=256)
    p.add_argument("--model", default=None, help="sentence-transformers model name or path (default MiniLM)")
    p.add_argument(
        "--modalities",
        default="text",
        help="comma-separated: text, image, behaviour (training co-occurrence); default text",
    )
    p.add_argument(
        "--image-encoder",
        default=None,
        help="image encoder: a genrec-pretrained or CLIP/SigLIP folder, or open_clip:ARCH:CHECKPOINT",
    )
    p.add_argument("--layout", choices=["fused", "per-modality"], default="fused")
    p.add_argument(
        "--modality-levels",
        default="text=2,image=1",
        help="per-modality layout: levels per modality, in order",
    )
    p.add_argument(
        "--modality-weights", default="", help="fusion weights, e.g. text=0.7,image=0.3 (default 1)"
    )
    p.add_argument("--behaviour-dim", type=int, default=64, help="size of the behaviour embedding")
    p.add_argument(
        "--behaviour-window", type=int, default=5, help="positions apart that count as co-occurring"
    )
    p.add_argument(
        "--align-behaviour",
        action="store_true",
        help="project content embeddings so training co-occurrences are close before quantizing",
    )
    p.add_argument(
        "--balanced-last-level",
        action="store_true",
        help="spread colliding items over distinct last-level codes (fewer de-dup codes)",
    )
    p.add_argument(
        "--impute-missing",
        action="store_true",
        help="predict a missing modality (no behaviour, no image) from the item's others, not a zero block",
    )
    p.add_argument("--seed", type=int, default=0)
    _add_threads(p)
    p.set_defaults(func=_cmd_sid)

    p = sub.add_parser("sasrec", help="train and evaluate the SASRec and Popularity baselines")
    p.add_argument("dataset")
    p.add_argument("--output-dir", default=None, help="checkpoint folder (resumes when it exists)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    _add_threads(p)
    p.set_defaults(func=_cmd_sasrec)

    p = sub.add_parser("recommend", help="recommend with a saved GenerativeRecommender")
    p.add_argument("model_dir")
    p.add_argument("history", nargs="*", help="item ids or titles, oldest first (empty: cold start)")
    p.add_argument("--num-items", type=int, default=10)
    p.add_argument("--num-beams", type=int, default=20)
    p.add_argument(
        "--item-weight",
        type=float,
        default=1.0,
        help="compact backbone with an item head: its log-probability's weight re-ranking the beam (0 = off)",
    )
    p.add_argument("--dataset", help="check the model against this dataset's catalog (default: saved one)")
    p.add_argument("--explain", action="store_true", help="explain each item (greedy decoding)")
    p.add_argument(
        "--explainer",
        choices=["adapter", "base"],
        default="adapter",
        help="explain with the tuned adapter or the base model (adapter disabled)",
    )
    p.add_argument("--max-new-tokens", type=int, default=64, help="explanation length limit in tokens")
    p.set_defaults(func=_cmd_recommend)

    p = sub.add_parser("thumbnails", help="generate personalized thumbnails with a saved pipeline")
    p.add_argument("pipeline_dir")
    p.add_argument("history", nargs="*", help="the user's item ids, oldest first")
    p.add_argument("--unconditional", action="store_true", help="no user: the unconditional branch")
    p.add_argument("--item", help="make this item's thumbnail for the user (a personalised variant)")
    p.add_argument("--image", help="img2img: start from this picture of --item (PNG/JPEG)")
    p.add_argument("--strength", type=float, default=0.7, help="img2img: 1 ignores the picture")
    p.add_argument("--user-guidance", type=float, default=3.0)
    p.add_argument("--item-guidance", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=25, help="denoising steps")
    p.add_argument("--output-dir", default="thumbnails")
    p.add_argument("--num-images", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_thumbnails)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it logs every CPU feature probe
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
