"""One rank of a tiny SFT run (``python`` or ``torchrun``): trains the real trainer, saves its weights.

    torchrun --nproc_per_node 2 tests/dist/sft_worker.py BASE OUT --batch 8
    python tests/dist/sft_worker.py BASE OUT --batch 16

Every rank writes ``OUT/rank<k>.safetensors`` (its trainable tensors after training) and rank 0 writes
``OUT/losses.json``. The train set is cut to one global batch, so 1 process x 16 and 2 processes x 8 see
the same examples at every step, whatever the sampler's order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for llm_tiny

import torch  # noqa: E402
from llm_tiny import tiny_dataset, tiny_sid  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from genrec.prompts import load_templates  # noqa: E402
from genrec.train import SFTRecipe, build_recommender, build_trainer  # noqa: E402
from genrec.utils import seed_everything  # noqa: E402

GLOBAL_BATCH = 16


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, required=True, help="per-device batch")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--optim", default="sgd")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    recipe = SFTRecipe.from_dict(
        {
            "model": {"base_model": args.base},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            "data": {"tasks": {"seqrec": 1.0}, "max_history": 5, "eval_users": 0},
            "train": {
                "output_dir": str(out / "run"),
                "max_steps": args.steps,
                "per_device_train_batch_size": args.batch,
                "learning_rate": 0.05,
                "warmup_steps": 0.0,
                "logging_steps": 1,
                "save_steps": 1000,
                "report_to": "none",
                "extra": {"optim": args.optim},
            },
        }
    )
    ds = tiny_dataset()
    seed_everything(0)  # LoRA's A matrices start random: every run must start from the same weights
    rec = build_recommender(recipe, ds.catalog, tiny_sid(ds.catalog))
    rec.templates = load_templates(names=["seqrec"])
    trainer = build_trainer(recipe, rec, ds)
    trainer.train_dataset = trainer.train_dataset.select(range(GLOBAL_BATCH))
    trainer.train()
    rank = int(os.environ.get("RANK", 0))
    tensors = {n: p.detach().contiguous() for n, p in rec.model.named_parameters() if p.requires_grad}
    save_file(tensors, str(out / f"rank{rank}.safetensors"))
    if rank == 0:
        (out / "log.json").write_text(json.dumps(trainer.state.log_history))


if __name__ == "__main__":
    main()
