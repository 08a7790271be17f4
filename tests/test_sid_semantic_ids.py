"""SemanticIDs: tokens, lookups, cold start, save/load round-trips and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec.data.dataset import Catalog, Item
from genrec.errors import CheckpointMismatchError, DataFormatError
from genrec.sid import SemanticIDs, build_semantic_ids


def make_embeddings(n: int = 48, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, dim)) * 5
    x = centres[np.arange(n) % 6] + rng.standard_normal((n, dim)) * 0.3
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog([Item(str(i + 1), f"item {i + 1}") for i in range(48)])


@pytest.fixture(scope="module")
def sid(catalog) -> SemanticIDs:
    return build_semantic_ids(
        make_embeddings(), levels=2, codebook_size=4, catalog=catalog, show_progress=False
    )


def test_tokens_follow_the_contract():
    sid = SemanticIDs(np.array([[12, 201, 7, 0], [12, 201, 7, 1]]), [256, 256, 256, 2])
    assert sid.level_prefixes == ["a", "b", "c", "d"]
    assert sid.item_tokens(0) == ["<a_12>", "<b_201>", "<c_7>", "<d_0>"]
    tokens = sid.all_tokens()
    assert len(tokens) == 256 * 3 + 2 == len(set(tokens))
    assert tokens[0] == "<a_0>" and tokens[-1] == "<d_1>"
    np.testing.assert_array_equal(sid.parse_tokens("<a_12><b_201><c_7><d_1>"), [12, 201, 7, 1])
    assert sid.tokens_to_item(["<a_12>", "<b_201>", "<c_7>", "<d_1>"]) == 1
    assert sid.tokens_to_item("<a_0><b_0><c_0><d_0>") == -1


@pytest.mark.parametrize(
    "text, match",
    [
        ("<a_1><b_2><c_3>", "expected 4"),
        ("<a_1><b_2><c_3><d_0> extra", "expected 4"),
        ("<a_1><c_2><b_3><d_0>", "prefix 'c'"),
        ("<a_1><b_2><c_3><d_9>", "out of range"),
    ],
)
def test_parse_tokens_rejects_malformed_strings(text, match):
    sid = SemanticIDs(np.array([[1, 2, 3, 0]]), [4, 4, 4, 1])
    with pytest.raises(ValueError, match=match):
        sid.parse_tokens(text)


def test_lookup_inverts_item_codes(sid):
    idx = np.arange(sid.num_items)
    np.testing.assert_array_equal(sid.lookup(sid.item_codes(idx)), idx)
    shuffled = np.random.default_rng(1).permutation(idx)
    np.testing.assert_array_equal(sid.lookup(sid.item_codes(shuffled)), shuffled)
    taken = {tuple(c) for c in sid.codes.tolist()}
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in sid.codebook_sizes], indexing="ij"), -1).reshape(
        -1, 3
    )
    free = np.array([c for c in grid.tolist() if tuple(c) not in taken])
    assert len(free) and (sid.lookup(free) == -1).all()
    np.testing.assert_array_equal(sid.lookup(np.array([[-1, 0, 0], [99, 0, 0], sid.codes[3]])), [-1, -1, 3])
    with pytest.raises(ValueError, match="shape"):
        sid.lookup(np.zeros((2, 5), dtype=int))


def test_constructor_rejects_duplicate_or_out_of_range_codes():
    with pytest.raises(ValueError, match="not unique"):
        SemanticIDs(np.array([[1, 0], [1, 0]]), [2, 1])
    with pytest.raises(ValueError, match="must lie in"):
        SemanticIDs(np.array([[2, 0]]), [2, 1])


def test_save_load_round_trip(sid, catalog, tmp_path):
    sid.save_pretrained(tmp_path / "sid")
    config = json.loads((tmp_path / "sid" / "sid_config.json").read_text())
    assert config["version"] == 1 and config["method"] == "rqkmeans"
    assert config["catalog_fingerprint"] == catalog.fingerprint()
    assert config["diagnostics"]["collision_rate"] == sid.diagnostics["collision_rate"]
    loaded = SemanticIDs.from_pretrained(tmp_path / "sid", catalog=catalog)
    np.testing.assert_array_equal(loaded.codes, sid.codes)
    assert loaded.codebook_sizes == sid.codebook_sizes
    assert loaded.all_tokens() == sid.all_tokens()
    new = make_embeddings(5, seed=7)
    np.testing.assert_array_equal(loaded.encode_new(new), sid.encode_new(new))


def test_rqvae_save_load_round_trip(catalog, tmp_path):
    x = make_embeddings()
    sid = build_semantic_ids(
        x,
        method="rqvae",
        levels=2,
        codebook_size=4,
        catalog=catalog,
        show_progress=False,
        epochs=2,
        batch_size=16,
        hidden_dims=[16],
        latent_dim=4,
    )
    sid.save_pretrained(tmp_path)
    loaded = SemanticIDs.from_pretrained(tmp_path, catalog=catalog)
    np.testing.assert_array_equal(loaded.encode_new(x)[:, :-1], sid.codes[:, :-1])


def test_from_pretrained_catalog_mismatch(sid, tmp_path):
    sid.save_pretrained(tmp_path)
    other = Catalog([Item(str(i + 1)) for i in range(47)] + [Item("x")])
    with pytest.raises(CheckpointMismatchError, match="index 47: saved '48', catalog 'x'"):
        SemanticIDs.from_pretrained(tmp_path, catalog=other)


def test_from_pretrained_unknown_version_and_corruption(sid, tmp_path):
    sid.save_pretrained(tmp_path)
    config_path = tmp_path / "sid_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "version": 99}))
    with pytest.raises(CheckpointMismatchError, match="version 99"):
        SemanticIDs.from_pretrained(tmp_path)
    config_path.write_text("{not json")
    with pytest.raises(DataFormatError, match="sid_config.json"):
        SemanticIDs.from_pretrained(tmp_path)
    sid.save_pretrained(tmp_path)
    (tmp_path / "sid.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="sid.safetensors"):
        SemanticIDs.from_pretrained(tmp_path)
    (tmp_path / "sid.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="sid.safetensors"):
        SemanticIDs.from_pretrained(tmp_path)


def test_cold_start_codes_do_not_clash(sid, catalog):
    x = make_embeddings()
    # Re-encoding two existing items as "new" items must give their semantic prefix and fresh dedup values.
    new = sid.encode_new(np.stack([x[0], x[0], x[5]]))
    np.testing.assert_array_equal(new[:, :-1], sid.codes[[0, 0, 5], :-1])
    assert (sid.lookup(new) == -1).all()
    assert len({tuple(c) for c in new}) == 3
    group = (sid.codes[:, :-1] == sid.codes[0, :-1]).all(1)
    assert new[0, -1] == sid.codes[group, -1].max() + 1 and new[1, -1] == new[0, -1] + 1

    grown = sid.extend(["new-1", "new-2", "new-3"], np.stack([x[0], x[0], x[5]]))
    assert grown.num_items == sid.num_items + 3
    np.testing.assert_array_equal(grown.lookup(new), [48, 49, 50])
    assert grown.codebook_sizes[-1] >= new[:, -1].max() + 1
    with pytest.raises(ValueError, match="already"):
        sid.extend(["1"], x[:1])
    with pytest.raises(ValueError, match="shape"):
        sid.encode_new(np.zeros((1, 3), dtype=np.float32))


def test_load_or_build_builds_once_then_reloads(tmp_path, monkeypatch):
    import genrec.embed
    from genrec.data import make_synthetic
    from genrec.sid import SemanticIDSpec, load_or_build_semantic_ids

    ds = make_synthetic(num_users=20, num_items=48)
    spec = SemanticIDSpec(levels=2, codebook_size=4)
    calls = []

    def fake_encode(catalog, modalities, *args):  # stands in for MiniLM: the test is about caching
        calls.append(modalities)
        return {"text": make_embeddings(len(catalog))}

    monkeypatch.setattr(genrec.embed, "encode_item_modalities", fake_encode)
    built = load_or_build_semantic_ids(ds, tmp_path / "sid", spec)
    again = load_or_build_semantic_ids(ds, tmp_path / "sid", spec)
    assert calls == [["text"]]
    np.testing.assert_array_equal(built.codes, again.codes)
    other = make_synthetic(num_users=20, num_items=49)
    with pytest.raises(CheckpointMismatchError):
        load_or_build_semantic_ids(other, tmp_path / "sid", spec)
