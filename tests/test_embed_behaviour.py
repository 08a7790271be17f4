"""Behaviour embeddings and behaviour-aware semantic IDs: known structure, no leakage, clear errors."""

import dataclasses
import json

import numpy as np
import pytest

from genrec.data import Catalog, Item, SequenceDataset
from genrec.embed import cooccurrence_embeddings
from genrec.errors import CheckpointMismatchError
from genrec.sid import SemanticIDSpec, build_dataset_semantic_ids, load_or_build_semantic_ids


def two_communities(num_users: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Users of items 0-9 and users of items 10-19 (never mixed); item 20 is never consumed."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(10)[:8] + (10 if u % 2 else 0) for u in range(num_users)]


def test_items_consumed_together_are_closer_than_items_never_consumed_together():
    emb = cooccurrence_embeddings(two_communities(), num_items=21, dim=4)
    sim = emb @ emb.T
    group = np.arange(20) < 10
    same = group[:, None] == group[None, :]
    within = sim[:20, :20][same & ~np.eye(20, dtype=bool)]
    across = sim[:20, :20][~same]
    assert within.min() > across.max()
    np.testing.assert_allclose(np.linalg.norm(emb[:20], axis=1), 1.0, rtol=1e-5)
    assert not emb[20].any()  # never seen in training: a zero row, coded from content alone


def test_cooccurrence_embeddings_reject_bad_input():
    with pytest.raises(ValueError, match="dim"):
        cooccurrence_embeddings(two_communities(), num_items=21, dim=21)
    with pytest.raises(ValueError, match="no co-occurring"):
        cooccurrence_embeddings([np.array([3])], num_items=21, dim=2)
    with pytest.raises(ValueError, match="num_items"):
        cooccurrence_embeddings(two_communities(), num_items=15, dim=2)


def dataset_with(targets: np.ndarray) -> SequenceDataset:
    """Two communities; each user's last two items (validation, test) are ``targets``."""
    catalog = Catalog([Item(str(i), f"item {i}") for i in range(21)])
    seqs = [np.concatenate([s, t]) for s, t in zip(two_communities(), targets)]
    return SequenceDataset("communities", catalog, [f"u{i}" for i in range(len(seqs))], seqs)


def behaviour_spec(**kw) -> SemanticIDSpec:
    return SemanticIDSpec(modalities=["behaviour"], levels=2, codebook_size=2, behaviour_dim=4, **kw)


def test_behaviour_ids_split_the_communities_and_ignore_held_out_targets():
    rng = np.random.default_rng(1)
    a = build_dataset_semantic_ids(dataset_with(rng.integers(0, 21, (40, 2))), behaviour_spec(), False)
    first = a.codes[:20, 0]
    assert len(set(first[:10])) == 1 and len(set(first[10:])) == 1 and first[0] != first[10]
    # validation and test items are not training data: other targets, the same IDs
    b = build_dataset_semantic_ids(dataset_with(rng.integers(0, 21, (40, 2))), behaviour_spec(), False)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert a.build_config["spec"]["modalities"] == ["behaviour"]


def test_saved_ids_are_reused_only_for_the_same_spec(tmp_path):
    ds = dataset_with(np.zeros((40, 2), dtype=np.int64))
    built = load_or_build_semantic_ids(ds, tmp_path / "sid", behaviour_spec())
    np.testing.assert_array_equal(
        load_or_build_semantic_ids(ds, tmp_path / "sid", behaviour_spec()).codes, built.codes
    )
    with pytest.raises(CheckpointMismatchError, match="behaviour_window"):
        load_or_build_semantic_ids(ds, tmp_path / "sid", behaviour_spec(behaviour_window=2))
    # a save from before a spec field existed is read with that field's default
    config_path = tmp_path / "sid" / "sid_config.json"
    config = json.loads(config_path.read_text())
    del config["build_config"]["spec"]["balanced_last_level"]
    config_path.write_text(json.dumps(config))
    np.testing.assert_array_equal(
        load_or_build_semantic_ids(ds, tmp_path / "sid", behaviour_spec()).codes, built.codes
    )


def test_spec_names_the_bad_field():
    with pytest.raises(ValueError, match="sid.modalities"):
        SemanticIDSpec(modalities=["audio"])
    with pytest.raises(ValueError, match="sid.image_encoder"):
        SemanticIDSpec(modalities=["text", "image"])
    with pytest.raises(ValueError, match="sid.modality_weights"):
        SemanticIDSpec(modalities=["text"], modality_weights={"behaviour": 2.0})
    with pytest.raises(ValueError, match="sid.layout"):
        SemanticIDSpec(layout="late")


def test_cli_builds_behaviour_ids(tmp_path, monkeypatch, capsys):
    import genrec.data
    from genrec.cli import main
    from genrec.sid import SemanticIDs

    ds = dataset_with(np.zeros((40, 2), dtype=np.int64))
    monkeypatch.setattr(genrec.data, "load_dataset", lambda name: ds)
    out = tmp_path / "sid"
    args = ["sid", "toy", "--output-dir", str(out), "--modalities", "behaviour", "--levels", "2"]
    assert main([*args, "--codebook-size", "2", "--behaviour-dim", "4", "--threads", "1"]) == 0
    sid = SemanticIDs.from_pretrained(out, catalog=ds.catalog)
    assert sid.build_config["spec"]["behaviour_dim"] == 4
    first = sid.codes[:20, 0]
    assert len(set(first[:10])) == 1 and first[0] != first[10]


def test_impute_missing_gives_an_unconsumed_item_the_behaviour_its_text_predicts(monkeypatch):
    """Item 20 is in no training sequence; its title is community B's. With ``impute_missing`` its behaviour
    block is predicted from text (near B's), not left zero, before quantizing; the spec records it."""
    import genrec.sid.spec as spec_module

    words = ["rose petal face cream"] * 10 + ["steel claw hammer"] * 10 + ["steel claw hammer"]
    catalog = Catalog([Item(str(i), f"{w} {i}") for i, w in enumerate(words)])
    seqs = [np.concatenate([s, [0, 1]]) for s in two_communities()]
    ds = SequenceDataset("communities", catalog, [f"u{i}" for i in range(len(seqs))], seqs)
    seen = {}
    build = spec_module.build_multimodal_semantic_ids
    monkeypatch.setattr(
        spec_module, "build_multimodal_semantic_ids", lambda e, **kw: seen.update(e) or build(e, **kw)
    )
    spec = SemanticIDSpec(modalities=["text", "behaviour"], levels=2, codebook_size=2, behaviour_dim=4)
    build_dataset_semantic_ids(ds, spec, False)
    assert not seen["behaviour"][20].any()
    sid = build_dataset_semantic_ids(ds, dataclasses.replace(spec, impute_missing=True), False)
    behaviour = seen["behaviour"]
    community_b = behaviour[10:20].mean(axis=0)
    community_a = behaviour[:10].mean(axis=0)
    assert behaviour[20] @ community_b > 0.9 * np.linalg.norm(community_b) > behaviour[20] @ community_a
    assert sid.build_config["spec"]["impute_missing"] is True
