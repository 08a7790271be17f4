"""Personalized thumbnails on MovieLens-1M posters: personalized vs shuffled-user vs unconditional.

    GENREC_THREADS=1 python -m bench.thumbnails_ml1m   # ~70 min on one CPU core (resumable)
    python -m bench.thumbnails_ml1m --work-dir /tmp/smoke --vae-steps 3 --unet-steps 3 \
        --evaluator-steps 3 --eval-users 6 --sample-steps 2 --dry-run            # smoke run, not recorded

On a CPU shared with other jobs, one torch thread was 10-30x faster per step than two (measured).

Trains (1) a genre-classifier evaluator on training-split posters, (2) a small VAE and (3) the
conditional latent UNet, then samples thumbnails for held-out users (never seen in training) and
scores them in the evaluator's feature space, side by side against two controls from the same run:
the same model with user conditions shuffled across users, and the unconditional model (the same
network's null-condition branch, trained jointly through condition dropout, as in
classifier-free guidance). Posters are copyrighted: the docs grid shows generated images only.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import ROOT, markdown_table, record
from genrec.data import load_movielens_posters
from genrec.diffusion import ThumbnailTrainer, ThumbnailTrainingConfig
from genrec.diffusion.evaluator import (
    GenreEvaluator,
    frechet_distance,
    genre_alignment,
    multilabel_metrics,
    personalization_p_value,
    personalization_scores,
    train_genre_evaluator,
)
from genrec.diffusion.grid import save_grid
from genrec.diffusion.trainer import step_time_summary
from genrec.embed import encode_items
from genrec.utils import atomic_write_json, configure_threads, read_json, shared_dataset

ITEM_TEMPLATE = "{{ title }}. Genres: {{ genres | join(', ') }}"
logger = logging.getLogger("bench.thumbnails_ml1m")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default="runs/thumbnails_ml1m", help="checkpoints, caches, training grids")
    p.add_argument("--vae-steps", type=int, default=3000)
    p.add_argument("--unet-steps", type=int, default=3000)
    p.add_argument(
        "--p-drop-item",
        type=float,
        default=0.5,
        help="item-condition dropout: the user-only branch (what is scored) trains on this share of steps",
    )
    p.add_argument("--evaluator-steps", type=int, default=6000)
    p.add_argument(
        "--evaluator-shift", type=int, default=4, help="evaluator augmentation: random shifts of up to N px"
    )
    p.add_argument(
        "--evaluator-blur",
        type=float,
        default=0.5,
        help="evaluator augmentation: share of batches blurred (down- and upsampled), so blur alone "
        "does not erase genre cues (VAE reconstructions keep them; measured)",
    )
    p.add_argument("--eval-users", type=int, default=100, help="held-out users scored (of the 10%% held out)")
    p.add_argument("--images-per-user", type=int, default=8)
    p.add_argument(
        "--reference-items", type=int, default=20, help="last N items of a user = held-out history"
    )
    p.add_argument("--user-guidance", type=float, default=5.0)
    p.add_argument("--item-guidance", type=float, default=4.0, help="for the item-conditioned genre probe")
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--sample-scheduler", default="ddim", choices=["ddim", "ddpm", "dpmsolver"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--dry-run", action="store_true", help="print the summary without recording it (smoke runs)"
    )
    return p.parse_args()


def genre_matrix(dataset) -> tuple[list[str], np.ndarray]:
    genres = sorted({g for item in dataset.catalog for g in item.fields.get("genres", [])})
    col = {g: j for j, g in enumerate(genres)}
    y = np.zeros((dataset.num_items, len(genres)), dtype=np.float32)
    for i, item in enumerate(dataset.catalog):
        for g in item.fields.get("genres", []):
            y[i, col[g]] = 1.0
    return genres, y


def probe_genres(
    pipe, evaluator, item_emb, labels, genres, real_probs, recon_probs, args, min_posters: int = 10
) -> list[dict]:
    """Where is genre lost? For held-out posters of each genre (with at least ``min_posters``), the
    evaluator's mean p(genre) as a multiple of its base rate, on the real posters, their VAE
    reconstructions and thumbnails generated from the (unseen) item's own condition."""
    generated = pipe(
        item_embedding=torch.from_numpy(item_emb),
        item_guidance_scale=args.item_guidance,
        num_inference_steps=args.sample_steps,
        generator=torch.Generator().manual_seed(args.seed),
        num_images=2,
        output_type="pt",
    ).images
    gen_probs = evaluator.features_and_probs(generated * 2 - 1)[1].reshape(len(item_emb), 2, -1).mean(1)
    labels = labels.astype(bool)
    base = real_probs.mean(0)
    stages = (("real", real_probs), ("vae_reconstruction", recon_probs), ("generated_from_item", gen_probs))
    return [
        {
            "genre": g,
            "posters": int(labels[:, j].sum()),
            **{f"lift_{name}": float(probs[labels[:, j], j].mean() / base[j]) for name, probs in stages},
        }
        for j, g in enumerate(genres)
        if labels[:, j].sum() >= min_posters
    ]


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    threads = configure_threads(args.threads)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    walls: dict[str, float] = {}
    t0 = time.perf_counter()

    dataset = load_movielens_posters(shared_dataset("movielens-1m-posters"))
    item_emb = encode_items(dataset.catalog, template=ITEM_TEMPLATE)
    walls["load_and_embed"] = time.perf_counter() - t0

    config = ThumbnailTrainingConfig(
        output_dir=str(work / "run"),
        seed=args.seed,
        image_size=64,
        vae_block_out_channels=[16, 32, 64],
        vae_steps=args.vae_steps,
        vae_batch_size=32,
        vae_crop_size=32,
        unet_block_out_channels=[32, 64, 128],
        train_steps=args.unet_steps,
        p_drop_item=args.p_drop_item,
        batch_size=32,
        save_every=250,
        sample_every=500,
        sample_steps=args.sample_steps,
        sample_scheduler=args.sample_scheduler,
        user_guidance_scale=args.user_guidance,
    )
    t = time.perf_counter()
    trainer = ThumbnailTrainer(config, dataset, item_emb)
    images = trainer.images
    walls["decode_images"] = time.perf_counter() - t

    # -- (1) evaluator on training-split posters only -------------------------------------------
    genres, y = genre_matrix(dataset)
    held_item = trainer.holdout.item_mask(dataset.num_items)[images.indices]
    t = time.perf_counter()
    ev_dir = work / (
        f"evaluator-{args.evaluator_steps}steps-shift{args.evaluator_shift}-blur{args.evaluator_blur}"
    )
    if (ev_dir / "config.json").is_file():
        evaluator = GenreEvaluator.from_pretrained(ev_dir)
    else:
        train_rows = np.flatnonzero(~held_item)
        evaluator = train_genre_evaluator(
            images.pixels[train_rows],
            y[images.indices[train_rows]],
            genres,
            steps=args.evaluator_steps,
            seed=args.seed,
            max_shift=args.evaluator_shift,
            blur_prob=args.evaluator_blur,
        )
        evaluator.save_pretrained(ev_dir)
    walls["evaluator_train"] = time.perf_counter() - t
    real_feats, real_probs = evaluator.features_and_probs(images.to_float(slice(None)))
    ev_metrics = multilabel_metrics(real_probs[held_item], y[images.indices[held_item]])
    logger.info("evaluator on %d held-out posters: %s", int(held_item.sum()), ev_metrics)

    # -- (2)+(3) VAE and UNet ---------------------------------------------------------------------
    t = time.perf_counter()
    pipe = trainer.train(resume=True)
    walls["vae_unet_train"] = time.perf_counter() - t
    timing_path = work / "step_times.json"
    if trainer.step_times:
        atomic_write_json(
            timing_path, {"unet_step_s": step_time_summary(trainer.step_times), "threads": threads}
        )
    # A resumed run reports the step time (and thread count) of the session that trained.
    timing = read_json(timing_path) if timing_path.is_file() else {}
    unet_step_s = timing.get("unet_step_s", float("nan"))
    train_threads = timing.get("threads", threads)

    # -- held-out users: condition on the past, score against the last N items -------------------
    users = trainer.holdout.test_users[: args.eval_users]
    cond_hist, ref_rows, ref_pref = [], [], []
    for u in users:
        seq = dataset.sequences[u]
        n_ref = min(args.reference_items, len(seq) // 2)
        cond_hist.append(seq[:-n_ref])
        ref = [images.row_of[i] for i in seq[-n_ref:] if images.row_of[i] >= 0]
        ref_rows.append(ref)
        ref_pref.append(y[seq[-n_ref:]].sum(0))
    ref_pref = np.stack(ref_pref)
    center = real_feats[~held_item].mean(0)
    ref_centroids = np.stack([real_feats[r].mean(0) for r in ref_rows]) - center
    user_vecs = trainer.user_encoder.encode(cond_hist)
    k = args.images_per_user
    perm = np.random.default_rng(args.seed).permutation(len(users))
    while np.any(perm == np.arange(len(users))):  # a derangement: nobody keeps their own condition
        perm = np.random.default_rng(int(perm[0]) + 1).permutation(len(users))

    def generate(user_embedding: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        start = time.perf_counter()
        out = pipe(
            user_embedding=user_embedding,
            user_guidance_scale=args.user_guidance,
            num_inference_steps=args.sample_steps,
            generator=torch.Generator().manual_seed(args.seed),  # same noise for every variant
            num_images=k if user_embedding is not None else k * len(users),
            output_type="pt",
        ).images
        return out, time.perf_counter() - start

    # Ceilings from real images: the user's own earlier posters stand in for generated thumbnails.
    # If even these score below a goal, the goal is out of reach in this feature space.
    rng = np.random.default_rng(args.seed)
    cond_rows = [[images.row_of[i] for i in h if images.row_of[i] >= 0] for h in cond_hist]
    real_k = np.stack([real_feats[rng.choice(r, min(k, len(r)), replace=False)].mean(0) for r in cond_rows])
    real_all = np.stack([real_feats[r].mean(0) for r in cond_rows])
    ceilings = {
        f"own_history_posters_{k}": personalization_scores(real_k - center, ref_centroids),
        "own_history_posters_all": personalization_scores(real_all - center, ref_centroids),
    }
    logger.info("real-poster ceilings: %s", ceilings)

    pipe.set_progress_bar_config(disable=True)
    variants = {"personalized": user_vecs, "shuffled_users": user_vecs[perm], "unconditional": None}
    rows, generated = {}, {}
    for name, vecs in variants.items():
        imgs, secs = generate(vecs)
        generated[name] = imgs
        feats, probs = evaluator.features_and_probs(imgs * 2 - 1)
        centroids = feats.reshape(len(users), k, -1).mean(1) - center
        rows[name] = {
            "variant": name,
            **{
                f"personalization_{m}": v for m, v in personalization_scores(centroids, ref_centroids).items()
            },
            "personalization_p_value": personalization_p_value(centroids, ref_centroids, seed=args.seed),
            **{
                f"genre_{m}": v
                for m, v in genre_alignment(probs.reshape(len(users), k, -1).mean(1), ref_pref).items()
            },
            "evaluator_fd": frechet_distance(feats, real_feats[~held_item]),
            "images_per_s": len(imgs) / secs,
        }
        logger.info("%s: %s", name, rows[name])
    walls["sample_and_score"] = sum(len(generated[n]) / rows[n]["images_per_s"] for n in rows)

    # Reference points for the fidelity scale: real held-out posters, and VAE reconstructions.
    fd_real = frechet_distance(real_feats[held_item], real_feats[~held_item])
    held_rows = np.flatnonzero(held_item)
    with torch.no_grad():
        recon = pipe.decode(
            pipe.vae.encode(images.to_float(torch.from_numpy(held_rows))).latent_dist.mean
            * pipe.vae.config.scaling_factor
        )
    recon_feats, recon_probs = evaluator.features_and_probs(recon * 2 - 1)
    fd_recon = frechet_distance(recon_feats, real_feats[~held_item])
    genre_probe = probe_genres(
        pipe,
        evaluator,
        item_emb[images.indices[held_rows]],
        y[images.indices[held_rows]],
        genres,
        real_probs[held_rows],
        recon_probs,
        args,
    )
    logger.info("genre probe: %s", genre_probe)

    # Docs grid: generated thumbnails only (posters are copyrighted and stay out of the repo).
    grid_users, grid_k = list(range(min(6, len(users)))), min(k, 8)
    to_uint8 = lambda x: (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # noqa: E731
    grid_rows = [
        (
            [to_uint8(generated["personalized"][u * k + j]) for j in range(grid_k)],
            [to_uint8(generated["unconditional"][u * k + j]) for j in range(grid_k)],
        )
        for u in grid_users
    ]
    labels = ["prefers: " + ", ".join(genres[g] for g in np.argsort(-ref_pref[u])[:3]) for u in grid_users]
    grid_dir = work if args.dry_run else ROOT / "docs" / "img"
    grid = save_grid(
        grid_rows,
        grid_dir / "thumbnails_ml1m_samples.png",
        titles=("personalized (held-out users)", "unconditional, same noise"),
        labels=labels,
    )

    p, s, uc = rows["personalized"], rows["shuffled_users"], rows["unconditional"]
    metrics = {
        "personalization_auc": p["personalization_auc"],
        "personalization_win_rate": p["personalization_win_rate"],
        "personalization_p_value": p["personalization_p_value"],
        "genre_cosine": p["genre_cosine"],
        "genre_js_divergence": p["genre_js_divergence"],
        "evaluator_fd": p["evaluator_fd"],
        "unet_train_step_s_batch32": unet_step_s,
        "sample_images_per_s": p["images_per_s"],
        "evaluator_heldout_items": ev_metrics,
        "evaluator_fd_real_heldout_posters": fd_real,
        "evaluator_fd_vae_reconstructions": fd_recon,
        "genre_probe": genre_probe,
    }
    baselines = {
        "shuffled_users": s,
        "unconditional": uc,
        **{name: {f"personalization_{m}": v for m, v in sc.items()} for name, sc in ceilings.items()},
    }
    table = markdown_table(
        list(rows.values()),
        [
            "variant",
            "personalization_auc",
            "personalization_win_rate",
            "personalization_p_value",
            "genre_cosine",
            "genre_js_divergence",
            "evaluator_fd",
            "images_per_s",
        ],
    )
    summary = (
        f"Personalized thumbnails, ML-1M posters (64x64, latent 16x16x4), {len(users)} held-out users x "
        f"{k} thumbnails, user guidance {args.user_guidance}, "
        f"{args.sample_steps} {config.sample_scheduler} steps; "
        f"VAE {args.vae_steps} steps, UNet {args.unet_steps} steps at batch 32 ({unet_step_s:.2f} s/step, "
        f"{train_threads} threads, shared CPU; sampling {threads} threads).\n\n{table}\n"
        "`personalization_p_value`: one-sided permutation test, the share of 1,000 random user-to-thumbnail "
        "pairings that reach the variant's AUC.\n"
        f"Real-poster ceilings (the user's own earlier posters in place of thumbnails): {k} per user AUC "
        f"{ceilings[f'own_history_posters_{k}']['auc']:.3f}, all of them AUC "
        f"{ceilings['own_history_posters_all']['auc']:.3f}.\n"
        f"Ratios vs shuffled users: AUC {p['personalization_auc'] / s['personalization_auc']:.2f}x, "
        f"genre cosine {p['genre_cosine'] / s['genre_cosine']:.2f}x; evaluator FD vs unconditional "
        f"{p['evaluator_fd'] / uc['evaluator_fd']:.2f}x. Evaluator (genre CNN, {args.evaluator_steps} "
        f"steps on training-split posters) on held-out items: mAP {ev_metrics['mAP']:.3f}, AUC "
        f"{ev_metrics['AUC']:.3f}, top-1 acc {ev_metrics['top1_accuracy']:.3f}. Evaluator-FD scale: real "
        f"held-out posters {fd_real:.2f}, VAE "
        f"reconstructions {fd_recon:.2f}. `evaluator_fd` is a Fréchet distance in the genre CNN's feature "
        f"space, not Inception FID.\n\n"
        "Genre probe (held-out posters of each genre with at least 10 of them): the evaluator's mean "
        "p(genre) as a multiple of its base rate over all held-out posters, on the real posters, their VAE "
        f"reconstructions, and thumbnails generated from the item's own condition (item guidance "
        f"{args.item_guidance}).\n\n{markdown_table(genre_probe, list(genre_probe[0]))}\n"
        f"![thumbnails](img/{grid.name})"
    )
    walls["total"] = time.perf_counter() - t0
    if args.dry_run:
        print(summary)
        return
    record(
        "thumbnails_ml1m",
        dataset.name,
        metrics,
        baselines,
        walls,
        summary,
        extra={"config": config.to_dict(), "eval_users": len(users), "images_per_user": k},
    )
    print(summary)


if __name__ == "__main__":
    main()
