"""Do posters help semantic IDs? The same compact SID model on text, image, fused, per-modality and fused +
behaviour SIDs of MovieLens-1M, with SASRec and Popularity, warm and cold items.

    python -m bench.multimodal_sid_ml1m [--epochs 10] [--image-steps 3000] [--threads 2]

- 10% of the items (seeded) are **cold**: removed from every sequence the recommenders and the image encoder
  train on. They keep content SIDs: behaviour rows are zero for them, so they are coded from content, or
  (``fused + imputed behaviour``) their behaviour is predicted from text and poster (``genrec.embed.impute``).
- Test: leave-one-out on the full sequences, full ranking, all test users, history not masked, beam 20.
  ``cold_recall@10`` is over the test users whose target is a cold item, beside a content-kNN baseline (the
  items nearest the mean of the user's last 50 history items in each embedding space).
- The image encoder (``genrec.embed.pretrain_image_encoder``, CLIP-style against MiniLM titles) trains on
  warm posters only; its poster -> title retrieval R@10 among the cold items is reported against chance.
- The best variant is chosen by validation NDCG@10 (each variant's early-stopping metric), not on test.
- Cold admission (``genrec.decoding.cold_start``, TIGER-style): cold items enter a list through the model's
  probability of their first SID token, tie-broken by their similarity to the history in the variant's own
  embedding space, and by the item head's probability of the whole item (its vector is composed from the
  item's codes, so an item no sequence held still has one). Its four settings are chosen per variant on
  all validation users: the cheapest (highest validation NDCG@10) that recalls validation cold targets as
  well as content kNN in the variant's own space, within 5% of admitting nothing; then applied once to
  test. The ``admitted`` columns are those lists; the others are
  beam search re-ranked by the item head.

Every stage is resumable: a rerun skips what ``--work-dir`` already holds (variants one by one).
``--max-users`` is for smoke runs only; results are recorded only for the full data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import ROOT, count_test_evaluation, markdown_table, per_user_hits, record
from genrec.baselines import Popularity, SASRecConfig, train_sasrec
from genrec.data import SequenceDataset, SplitExamples, load_dataset
from genrec.decoding.cold_start import (
    ColdAdmission,
    admit_cold_items,
    choose_admission,
    cold_scores,
    first_token_log_probs,
)
from genrec.embed import (
    ImagePretrainConfig,
    cooccurrence_embeddings,
    encode_item_modalities,
    encode_items,
    impute_missing_modalities,
    l2_normalize,
    pretrain_image_encoder,
)
from genrec.eval import bootstrap_interval, evaluate_lists
from genrec.model import GenerativeRecommender
from genrec.model.compact import CompactConfig, CompactRecommender, CompactTrainingConfig, train_compact
from genrec.sid import build_multimodal_semantic_ids
from genrec.users import MeanItemEncoder
from genrec.utils import atomic_write_json, configure_threads, read_json

NAME = "multimodal_sid_ml1m"
BEAMS = 20
# the variant whose missing modalities (cold items' behaviour) come from the rest (genrec.embed.impute)
IMPUTED = "fused + imputed behaviour"
# name -> (modalities, layout, levels): per_modality takes levels per modality, in order
VARIANTS: dict[str, tuple[list[str], str, Any]] = {
    "text-only": (["text"], "fused", 3),
    "image-only": (["image"], "fused", 3),
    "fused": (["text", "image"], "fused", 3),
    "per-modality": (["text", "image"], "per_modality", {"text": 2, "image": 1}),
    "fused + behaviour": (["text", "image", "behaviour"], "fused", 3),
    IMPUTED: (["text", "image", "behaviour"], "fused", 3),
}
# with an item head (SIDLlamaForCausalLM): it re-ranks the beam's items and scores cold items from their codes
COMPACT = CompactConfig(
    hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512, max_items=50, item_head_weight=0.5
)


def variant_folder(name: str) -> str:
    return name.replace(" + ", "_").replace("-", "_").replace(" ", "_")


def split_cold(dataset: SequenceDataset, fraction: float, seed: int) -> tuple[np.ndarray, SequenceDataset]:
    """A boolean mask of cold items and the dataset with them removed from every sequence (for training)."""
    rng = np.random.default_rng(seed)
    cold = np.zeros(dataset.num_items, dtype=bool)
    cold[rng.choice(dataset.num_items, int(round(fraction * dataset.num_items)), replace=False)] = True
    warm = [np.asarray(s)[~cold[np.asarray(s)]] for s in dataset.sequences]
    keep = [i for i, s in enumerate(warm) if len(s) >= 3]  # a leave-one-out split needs 3 items
    warm_ds = SequenceDataset(
        f"{dataset.name}[warm]", dataset.catalog, [dataset.users[i] for i in keep], [warm[i] for i in keep]
    )
    return cold, warm_ds


def knn_lists(embeddings: np.ndarray, histories: list[np.ndarray], k: int = 10) -> np.ndarray:
    """Content kNN: items nearest the mean embedding of a history's last 50 items (own items excluded)."""
    table = torch.from_numpy(l2_normalize(embeddings).astype(np.float32))
    scores = MeanItemEncoder(table).encode(histories) @ table.T
    for u, h in enumerate(histories):
        scores[u, torch.from_numpy(np.asarray(h, dtype=np.int64))] = -torch.inf
    return scores.topk(k, dim=1).indices.numpy()


def cold_recall(lists: np.ndarray, targets: np.ndarray) -> float:
    return float(per_user_hits(lists, targets)["recall@10"].mean())


def retrieval_recall(image: np.ndarray, text: np.ndarray, items: np.ndarray, k: int = 10) -> float:
    """Poster -> title retrieval among ``items``: how often an item's own title is in its top ``k``."""
    sims = l2_normalize(image[items]) @ l2_normalize(text[items]).T
    ranks = (sims > np.diag(sims)[:, None]).sum(1)
    return float((ranks < k).mean())


# validation grid of the cold admission (genrec.decoding.cold_start): offset, tie-break weight, slots. The
# chosen point is the cheapest (highest NDCG@10 over all validation users) that recalls cold targets as
# well as content kNN does on the same validation users in the variant's own space, at most 5% below
# admitting nothing; a variant that cannot reach that recalls as many as the 5% allow. (At 1%, the rule
# before: fused + imputed behaviour recalled .023 of validation cold targets, content kNN .054.)
ADMISSION_GRID = {
    "bonuses": (-10.0, -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0),
    "similarity_weights": (0.0, 2.0, 5.0, 10.0, 20.0, 50.0),
    "max_slots": (1, 2, 3, 5),
    "item_weights": (0.0, 1.0),  # of the item head's log-probability of the cold item
}
ADMISSION_TOLERANCE = 0.05
# as stored with each admission (JSON: lists), so that a rerun recomputes only admissions made otherwise
ADMISSION_RULE = json.loads(
    json.dumps({**ADMISSION_GRID, "tolerance": ADMISSION_TOLERANCE, "target": "content kNN"})
)


def history_similarity(embeddings: np.ndarray, histories: list[np.ndarray], items: np.ndarray) -> np.ndarray:
    """``(U, C)`` cosines between each history's mean embedding and each of ``items``."""
    table = torch.from_numpy(l2_normalize(embeddings).astype(np.float32))
    return (MeanItemEncoder(table).encode(histories) @ table[torch.from_numpy(items)].T).numpy()


def variant_embeddings(name: str, embeddings: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The blocks variant ``name`` quantizes (missing ones predicted from the rest where it imputes)."""
    blocks = {m: embeddings[m] for m in VARIANTS[name][0]}
    return impute_missing_modalities(blocks) if name == IMPUTED else blocks


def joint_space(blocks: dict[str, np.ndarray]) -> np.ndarray:
    """Blocks side by side, each L2-normalised (a missing block stays zero)."""
    return np.hstack([l2_normalize(b) for b in blocks.values()])


def admission_inputs(compact: CompactRecommender, split: SplitExamples, cold_items: np.ndarray) -> dict:
    """What the model gives a cold admission in ``split``: the beams' top-10 and scores, and each cold
    item's first-level log-probability (decoded once and cached; the similarity term is recomputed)."""
    top, scores = compact.recommend(split.histories, k=10, num_beams=BEAMS, batch_size=64)
    first_tokens = compact.item_token_ids[cold_items, 0]
    log_probs, head_log_probs = [], []
    for start in range(0, len(split), 256):
        ids, mask = compact.encode_histories(split.histories[start : start + 256])
        log_probs.append(first_token_log_probs(compact.model, ids, mask)[:, first_tokens].numpy())
        if compact.model.has_item_head:
            head_log_probs.append(compact.model.item_log_probs(ids, mask)[:, cold_items].numpy())
    inputs = {"top": top, "scores": scores, "cold_log_probs": np.concatenate(log_probs)}
    if head_log_probs:
        inputs["cold_head_log_probs"] = np.concatenate(head_log_probs)
    return inputs


def admitted_lists(
    inputs: dict[str, np.ndarray], split: SplitExamples, cold_items: np.ndarray, admission: ColdAdmission
) -> np.ndarray:
    scores = cold_scores(
        inputs["cold_log_probs"], inputs["similarity"], admission, inputs.get("cold_head_log_probs")
    )
    return admit_cold_items(
        inputs["top"], inputs["scores"], cold_items, scores, admission.max_slots, exclude=split.histories
    )


def plot(rows: dict[str, dict], knn: dict[str, float], path: Path) -> Path:
    """NDCG@10 with 95% intervals per model, and cold-item recall@10 beside the content-kNN baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(rows)
    ndcg = [rows[n]["ndcg@10"] for n in names]
    ci = np.array([rows[n].get("ndcg@10_ci95", [rows[n]["ndcg@10"]] * 2) for n in names])
    err = np.abs(ci.T - np.array(ndcg))
    left.barh(names, ndcg, xerr=err, color=["C0" if "ndcg@10_ci95" in rows[n] else "C7" for n in names])
    left.invert_yaxis()
    left.set_xlabel("NDCG@10 (all test users, 95% bootstrap interval)")
    cold = {**{n: rows[n].get("cold_recall@10 admitted", rows[n]["cold_recall@10"]) for n in names}, **knn}
    right.barh(list(cold), list(cold.values()), color=["C1" if k in knn else "C0" for k in cold])
    right.invert_yaxis()
    right.set_xlabel("cold-target test users: recall@10\n(SID variants: with cold admission)")
    fig.suptitle("MovieLens-1M: semantic IDs from text, posters and behaviour (same compact model)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--image-steps", type=int, default=3000)
    p.add_argument("--codebook-size", type=int, default=64)
    p.add_argument("--cold-fraction", type=float, default=0.1)
    p.add_argument("--work-dir", type=Path, default=Path(f"runs/{NAME}"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-users", type=int, default=None, help="smoke runs only: nothing is recorded")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = configure_threads(args.threads)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state: dict[str, Any] = read_json(state_path) if state_path.is_file() else {}
    model = {"compact": dataclasses.asdict(COMPACT), "epochs": args.epochs, "beams": BEAMS}
    if state.setdefault("model", model) != model:
        raise SystemExit(f"{state_path}: results of another model ({state['model']}); use a new --work-dir")

    def save() -> None:
        atomic_write_json(state_path, state)

    dataset = load_dataset("ml1m-posters")
    if args.max_users:
        dataset = dataset.subset(list(range(min(args.max_users, dataset.num_users))))
    cold, warm = split_cold(dataset, args.cold_fraction, args.seed)
    test = dataset.test_examples()
    cold_users = np.flatnonzero(cold[test.targets])

    # Embeddings: text (cached), image (pretrained here on warm posters), behaviour (warm training sequences).
    text = encode_items(dataset.catalog, cache_dir=work / "cache")
    t = time.perf_counter()
    encoder = pretrain_image_encoder(
        dataset.catalog,
        text,
        ImagePretrainConfig(steps=args.image_steps, seed=args.seed),
        output_dir=work / "image_encoder",
        train_sequences=warm.train_sequences(),
        exclude_items=cold,
    )
    state.setdefault("image_encoder_s", time.perf_counter() - t)
    # cached by encoder weights and image content; an item with no readable poster gets a zero row (text only)
    image = encode_item_modalities(
        dataset.catalog, ["image"], image_encoder=encoder, cache_dir=work / "cache"
    )["image"]
    behaviour = cooccurrence_embeddings(warm.train_sequences(), dataset.num_items, seed=args.seed)
    embeddings = {"text": text, "image": image, "behaviour": behaviour}
    blocks = {name: variant_embeddings(name, embeddings) for name in VARIANTS}  # imputed once
    state["retrieval_r@10_cold"] = retrieval_recall(image, text, np.flatnonzero(cold))
    state["retrieval_chance"] = min(1.0, 10 / max(int(cold.sum()), 1))
    save()

    config = CompactTrainingConfig(
        compact=COMPACT,
        epochs=args.epochs,
        batch_size=64,
        learning_rate=2e-3,
        warmup_steps=50,
        eval_users=2000,
        patience=10**6,  # every variant runs the full schedule; the best epoch is kept
        num_threads=threads,
        seed=args.seed,
    )
    for name, (_, layout, levels) in VARIANTS.items():
        if name in state.get("variants", {}):
            continue
        folder = work / variant_folder(name)
        t = time.perf_counter()
        sid = build_multimodal_semantic_ids(
            blocks[name],
            layout=layout,
            levels=levels,
            codebook_size=args.codebook_size,
            seed=args.seed,
            catalog=dataset.catalog,
        )
        compact = train_compact(
            warm,
            [sid.item_tokens(i) for i in range(dataset.num_items)],
            dataclasses.replace(config, output_dir=str(folder / "compact")),
        )
        train_s = time.perf_counter() - t
        rec = GenerativeRecommender.from_compact(compact, dataset.catalog, sid)
        t = time.perf_counter()
        top, _ = rec.recommend(test.histories, k=10, num_beams=BEAMS, batch_size=64)
        history = read_json(folder / "compact" / "trainer_state.json")["history"]
        state.setdefault("variants", {})[name] = {
            "top": np.asarray(top).tolist(),
            "train_s": train_s,
            "decode_ms_per_user": 1000 * (time.perf_counter() - t) / len(test),
            "valid_ndcg@10": max(h.get("valid_ndcg@10", 0.0) for h in history),
            "diagnostics": {k: v for k, v in sid.diagnostics.items() if isinstance(v, (int, float))},
        }
        save()

    if "SASRec" not in state:
        sasrec = train_sasrec(
            warm, SASRecConfig(num_threads=threads, seed=args.seed), output_dir=work / "sasrec"
        )
        state["SASRec"] = np.asarray(sasrec.recommend(test.histories, k=10)[0]).tolist()
        save()
    popularity = np.asarray(Popularity().fit(warm).recommend(test.histories, k=10)[0])

    # Cold admission per variant, its settings chosen on all validation users (validation NDCG@10).
    valid, cold_items = dataset.valid_examples(), np.flatnonzero(cold)
    valid_cold = np.flatnonzero(cold[valid.targets])
    for name in VARIANTS:
        entry = state["variants"][name]
        if entry.get("admitted", {}).get("rule") == ADMISSION_RULE:
            continue
        folder = work / variant_folder(name)
        t = time.perf_counter()
        # similarity in the variant's own embedding space (behaviour too: zero, or imputed, for cold items)
        space, inputs = joint_space(blocks[name]), {}
        for split_name, split in (("valid", valid), ("test", test)):
            path = folder / f"admission_{split_name}.npz"  # beams and log-probabilities: decoded once
            if not path.is_file():
                compact = CompactRecommender.from_pretrained(folder / "compact" / "best", dataset.catalog)
                np.savez(path, **admission_inputs(compact, split, cold_items))
            inputs[split_name] = {
                **np.load(path),
                "similarity": history_similarity(space, split.histories, cold_items),
            }

        def valid_metrics(admission: ColdAdmission, on: dict[str, np.ndarray] = inputs["valid"]) -> dict:
            per_user = per_user_hits(admitted_lists(on, valid, cold_items, admission), valid.targets)
            return {
                "ndcg@10": float(per_user["ndcg@10"].mean()),
                "cold_recall@10": float(per_user["recall@10"][valid_cold].mean()),
            }

        knn_valid = cold_recall(
            knn_lists(space, [valid.histories[u] for u in valid_cold]), valid.targets[valid_cold]
        )
        chosen, chosen_metrics, grid = choose_admission(
            valid_metrics,
            "cold_recall@10",
            "ndcg@10",
            ADMISSION_TOLERANCE,
            **ADMISSION_GRID,
            target=knn_valid,
        )
        entry["admitted"] = {
            "rule": ADMISSION_RULE,
            "top": admitted_lists(inputs["test"], test, cold_items, chosen).tolist(),
            "admission": dataclasses.asdict(chosen),
            "valid_knn_cold_recall@10": knn_valid,
            "test_knn_cold_recall@10": cold_recall(
                knn_lists(space, [test.histories[u] for u in cold_users]), test.targets[cold_users]
            ),
            "valid": chosen_metrics,
            "valid_without": {k: grid[0][k] for k in chosen_metrics},
            "grid": grid,
            "seconds": time.perf_counter() - t,
        }
        save()

    lists = {name: np.asarray(v["top"]) for name, v in state["variants"].items()}
    lists["SASRec"] = np.asarray(state["SASRec"])
    lists["Popularity"] = popularity
    rows, per_user = {}, {}
    for name, top in lists.items():
        rows[name] = evaluate_lists(top, test.targets, dataset.num_items, (5, 10))
        per_user[name] = per_user_hits(top, test.targets)
        rows[name]["cold_recall@10"] = float(per_user[name]["recall@10"][cold_users].mean())
        if name in state["variants"]:
            admission = state["variants"][name]["admitted"]
            admitted = per_user_hits(np.asarray(admission["top"]), test.targets)
            rows[name]["recall@10 admitted"] = float(admitted["recall@10"].mean())
            rows[name]["ndcg@10 admitted"] = float(admitted["ndcg@10"].mean())
            rows[name]["cold_recall@10 admitted"] = float(admitted["recall@10"][cold_users].mean())
            rows[name]["content kNN cold_recall@10"] = admission["test_knn_cold_recall@10"]
            for m in ("recall@10", "ndcg@10"):
                rows[name][f"{m}_ci95"] = list(bootstrap_interval(per_user[name][m]))
    cold_histories = [test.histories[u] for u in cold_users]
    knn = {
        f"content kNN ({space})": cold_recall(knn_lists(emb, cold_histories), test.targets[cold_users])
        for space, emb in (
            ("text", text),
            ("image", image),
            ("text + image", np.hstack([text, image])),
            # the imputed variant's space: behaviour predicted from content, as its cold items get it
            ("text + image + imputed behaviour", joint_space(blocks[IMPUTED])),
        )
    }
    multimodal = [n for n in state["variants"] if n not in ("text-only", "image-only")]
    best = max(multimodal, key=lambda n: state["variants"][n]["valid_ndcg@10"])
    gain = {
        m: list(bootstrap_interval(per_user[best][m] - per_user["text-only"][m]))
        for m in ("recall@10", "ndcg@10")
    }
    table = [
        {
            "model": name,
            **{k: v for k, v in row.items() if not k.endswith("_ci95")},
            "valid_ndcg@10": state["variants"].get(name, {}).get("valid_ndcg@10", ""),
            "train_min": state["variants"].get(name, {}).get("train_s", 0) / 60,
        }
        for name, row in rows.items()
    ]
    columns = [
        "model",
        "recall@10",
        "ndcg@10",
        "cold_recall@10",
        "ndcg@10 admitted",
        "cold_recall@10 admitted",
        "content kNN cold_recall@10",
        "coverage@10",
        "valid_ndcg@10",
        "train_min",
    ]
    summary = (
        f"MovieLens-1M posters, {len(test)} test users ({len(cold_users)} with a cold target; "
        f"{int(cold.sum())} cold items), leave-one-out, full ranking, beam {BEAMS}; compact SID model "
        f"with an item head (loss weight {COMPACT.item_head_weight:g}; re-ranking each beam at weight 1), "
        f"{args.epochs} epochs per variant, {threads} thread(s).\n\n{markdown_table(table, columns)}\n"
        f"Best multimodal variant on validation: {best}. Paired 95% interval of ({best}) - (text-only): "
        f"recall@10 [{gain['recall@10'][0]:+.4f}, {gain['recall@10'][1]:+.4f}], ndcg@10 "
        f"[{gain['ndcg@10'][0]:+.4f}, {gain['ndcg@10'][1]:+.4f}]. Cold-item recall@10 of content kNN: "
        + ", ".join(f"{k} {v:.4f}" for k, v in knn.items())
        + f". Poster -> title retrieval R@10 among the cold items: {state['retrieval_r@10_cold']:.3f} "
        f"(chance {state['retrieval_chance']:.3f})."
    )
    figure = plot(rows, knn, (work if args.max_users else ROOT / "docs" / "img") / f"{NAME}.png")
    summary += f"\n\n![multimodal SIDs](img/{figure.name})"
    print(summary)
    if args.max_users:
        return
    looks = count_test_evaluation(
        NAME,
        {
            "epochs": args.epochs,
            "image_steps": args.image_steps,
            "compact": dataclasses.asdict(COMPACT),
            "cold_admission": ADMISSION_RULE,
        },
    )
    record(
        NAME,
        dataset="movielens-1m-posters",
        metrics={
            "variant": best,
            **{k: rows[best][k] for k in ("recall@10", "ndcg@10", "recall@10_ci95", "ndcg@10_ci95")},
            # with the cold admission chosen on validation: what the variant recommends for cold items
            "cold_recall@10": rows[best]["cold_recall@10 admitted"],
            "cold_recall@10_beams_only": rows[best]["cold_recall@10"],
            "recall@10_admitted": rows[best]["recall@10 admitted"],
            "ndcg@10_admitted": rows[best]["ndcg@10 admitted"],
            "admission": state["variants"][best]["admitted"]["admission"],
            "test_evaluations": looks["this_config"],
        },
        baselines={
            **{n: rows[n] for n in rows if n != best},
            **{k: {"cold_recall@10": v} for k, v in knn.items()},
        },
        wall_times={f"{n}_train": v["train_s"] for n, v in state["variants"].items()},
        summary=summary,
        extra={
            "paired_gain_vs_text_ci95": gain,
            "retrieval_r@10_cold": state["retrieval_r@10_cold"],
            "retrieval_chance": state["retrieval_chance"],
            "diagnostics": {n: v["diagnostics"] for n, v in state["variants"].items()},
            "cold_admission": {
                name: {k: x for k, x in v["admitted"].items() if k != "top"}
                for name, v in state["variants"].items()
            },
        },
    )


if __name__ == "__main__":
    main()
