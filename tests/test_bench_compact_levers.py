"""The levers bench measures every variant from the same plain model, whatever the recipe has adopted."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.compact_levers_beauty import BASELINE, COMMON, VARIANTS, folder_name, variant_config

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "compact_beauty.yaml"


def test_variants_start_from_the_recipe_without_its_item_head():
    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    assert recipe["compact"]["item_head_weight"] > 0  # the recipe has adopted the head ...
    base = variant_config(recipe, VARIANTS[BASELINE], epochs=10)
    assert base.compact.item_head_weight == 0  # ... the baseline the levers are measured from has not
    assert base.compact.hidden_size == recipe["compact"]["hidden_size"]
    assert (base.epochs, base.eval_users, base.eval_unseen_last) == (10, COMMON["eval_users"], True)
    assert base.channels == []  # one model per variant, whatever channels the recipe merges
    assert recipe["train_windows"] and not base.train_windows  # nor the windows it has adopted
    windows = variant_config(recipe, VARIANTS["item head 0.5 + 12 epochs + windows"], epochs=10)
    assert windows.train_windows and windows.compact.item_head_weight == 0.5
    # a nested override changes its own keys and keeps the recipe's others
    dropout = variant_config(recipe, VARIANTS["dropout"], epochs=10)
    assert (dropout.compact.residual_dropout, dropout.compact.item_head_weight) == (0.2, 0)
    assert dropout.epochs == 10
    assert dropout.compact.attention_dropout == recipe["compact"]["attention_dropout"]
    head = variant_config(recipe, VARIANTS["item head 0.5 + 12 epochs"], epochs=10)
    assert (head.compact.item_head_weight, head.epochs) == (0.5, 12)


def test_variant_folders_are_distinct_and_plain():
    folders = [folder_name(v) for v in VARIANTS]
    assert len(set(folders)) == len(folders)
    assert all(" " not in f and "," not in f and "/" not in f for f in folders)
