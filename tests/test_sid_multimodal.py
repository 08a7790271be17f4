"""Multimodal semantic IDs: per-modality layout, fusion, behaviour alignment, cold items, purity, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrec.data.dataset import Catalog, Item
from genrec.errors import CheckpointMismatchError
from genrec.sid import MultimodalQuantizer, SemanticIDs, build_multimodal_semantic_ids, category_purity
from genrec.sid.multimodal import parse_modality_map

N = 64


def same_partition(codes: np.ndarray, labels: np.ndarray) -> bool:
    """Codes and labels split the items the same way (a bijection between code and label values)."""
    pairs = set(zip(codes.tolist(), labels.tolist()))
    return len(pairs) == len(set(codes.tolist())) == len(set(labels.tolist()))


@pytest.fixture(scope="module")
def data():
    """Text says one of 4 categories, the image one of 2 styles, independently of each other."""
    rng = np.random.default_rng(0)
    text_label, image_label = np.arange(N) % 4, (np.arange(N) // 4) % 2
    text = np.eye(8, dtype=np.float32)[text_label] + 0.02 * rng.standard_normal((N, 8)).astype(np.float32)
    image = np.eye(6, dtype=np.float32)[3 * image_label] + 0.02 * rng.standard_normal((N, 6)).astype(
        np.float32
    )
    cats = ["shoes", "hats", "bags", "rings"]
    catalog = Catalog([Item(str(i), f"item {i}", {"categories": [cats[text_label[i]]]}) for i in range(N)])
    return {"text": text, "image": image}, text_label, image_label, catalog


def test_per_modality_layout_takes_levels_from_each_modality(data):
    emb, text_label, image_label, catalog = data
    sid = build_multimodal_semantic_ids(
        emb,
        "per_modality",
        levels={"text": 1, "image": 1},
        codebook_size=[4, 2],
        catalog=catalog,
        show_progress=False,
    )
    assert sid.codebook_sizes[:2] == [4, 2] and sid.num_levels == 3  # + de-dup level
    assert same_partition(sid.codes[:, 0], text_label) and same_partition(sid.codes[:, 1], image_label)
    assert sid.diagnostics["category_purity"][0] == 1.0  # level 1 is the text category
    assert {"collision_rate", "per_level", "missing_modality_items"} <= set(sid.diagnostics)

    swapped = build_multimodal_semantic_ids(
        emb, "per_modality", levels={"image": 1, "text": 1}, codebook_size=[2, 4], show_progress=False
    )
    assert same_partition(swapped.codes[:, 0], image_label) and same_partition(
        swapped.codes[:, 1], text_label
    )


def test_fused_layout_sees_both_modalities(data):
    emb, text_label, image_label, catalog = data
    sid = build_multimodal_semantic_ids(
        emb, "fused", levels=1, codebook_size=8, catalog=catalog, show_progress=False
    )
    assert same_partition(sid.codes[:, 0], text_label * 2 + image_label)
    text_only = build_multimodal_semantic_ids(
        {"text": emb["text"]}, levels=1, codebook_size=4, catalog=catalog, show_progress=False
    )
    assert same_partition(text_only.codes[:, 0], text_label)


def test_cold_item_gets_codes_from_content(data, tmp_path):
    emb, text_label, image_label, _ = data
    train = {m: e[1:] for m, e in emb.items()}  # item 0 is held out of quantizer training
    sid = build_multimodal_semantic_ids(
        train, "per_modality", levels={"text": 1, "image": 1}, codebook_size=[4, 2], show_progress=False
    )
    stacked = sid.quantizer.stack({m: e[:1] for m, e in emb.items()})
    new = sid.encode_new(stacked)
    twin = np.flatnonzero((text_label[1:] == text_label[0]) & (image_label[1:] == image_label[0]))
    np.testing.assert_array_equal(new[0, :2], sid.codes[twin[0], :2])  # same content -> same semantic prefix
    assert sid.lookup(new)[0] == -1  # and a fresh de-dup value, no clash

    sid.save_pretrained(tmp_path)
    loaded = SemanticIDs.from_pretrained(tmp_path)
    assert isinstance(loaded.quantizer, MultimodalQuantizer)
    np.testing.assert_array_equal(loaded.encode_new(stacked), new)
    with pytest.raises(ValueError, match="text:8 \\+ image:6"):
        sid.encode_new(emb["text"][:1])
    with pytest.raises(ValueError, match="missing embeddings"):
        sid.quantizer.stack({"text": emb["text"]})


def test_items_without_image_fall_back_and_are_counted(data, caplog):
    emb, text_label, _, _ = data
    image = emb["image"].copy()
    image[:3] = 0.0
    sid = build_multimodal_semantic_ids(
        {"text": emb["text"], "image": image}, levels=1, codebook_size=8, show_progress=False
    )
    assert sid.diagnostics["missing_modality_items"] == {"text": 0, "image": 3}
    assert "3 items have no image embedding" in caplog.text


def test_behaviour_aligned_ids_save_and_reload(data, tmp_path):
    emb, _, _, _ = data
    pairs = np.array([[i, (i + 1) % N] for i in range(N)] * 4)
    from genrec.embed import BehaviourAlignConfig

    sid = build_multimodal_semantic_ids(
        emb,
        levels=2,
        codebook_size=4,
        behaviour_pairs=pairs,
        behaviour=BehaviourAlignConfig(steps=20, batch_size=32),
        show_progress=False,
    )
    part = sid.quantizer.parts[0]
    assert part.projection is not None and part.projection.shape == (14, 14)
    assert sid.build_config["behaviour"]["steps"] == 20
    sid.save_pretrained(tmp_path)
    loaded = SemanticIDs.from_pretrained(tmp_path)
    x = sid.quantizer.stack(emb)
    np.testing.assert_array_equal(loaded.quantizer.encode(x), sid.codes[:, :-1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layout": "late"}, "layout"),
        ({"layout": "per_modality", "levels": 3}, "levels per modality"),
        ({"layout": "per_modality", "levels": {"audio": 1}}, "audio"),
        ({"levels": {"text": 1}}, "int number"),
        ({"weights": {"audio": 1.0}}, "audio"),
    ],
)
def test_bad_layouts_fail_clearly(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_multimodal_semantic_ids(data[0], codebook_size=4, show_progress=False, **kwargs)


def test_category_purity_known_answer():
    codes = np.array([0, 0, 0, 1, 1])
    labels = np.array([0, 0, 1, 1, 1])
    assert category_purity(codes, labels) == pytest.approx(4 / 5)
    assert category_purity(np.stack([codes, [0, 0, 1, 0, 0]], 1), labels) == 1.0


def test_parse_modality_map():
    assert parse_modality_map("text=2, image=1", int) == {"text": 2, "image": 1}
    assert parse_modality_map("") == {}
    with pytest.raises(ValueError, match="MODALITY=VALUE"):
        parse_modality_map("text:2")


def test_cli_sid_with_text_and_image(tmp_path, monkeypatch, capsys):
    import genrec.data
    import genrec.embed.image as image_module
    from genrec.cli import main
    from genrec.data.synthetic import make_synthetic

    toy = make_synthetic(
        num_users=30, num_items=32, num_categories=4, max_length=8, image_dir=tmp_path / "img"
    )
    monkeypatch.setattr(genrec.data, "load_dataset", lambda name: toy)
    rng = np.random.default_rng(0)
    monkeypatch.setattr(image_module, "encode_items", lambda c, **kw: rng.standard_normal((len(c), 8)))

    def image_encoder(spec):
        assert spec == "my-encoder"
        return lambda paths: np.ones((len(paths), 3)) + np.arange(len(paths))[:, None] % 5

    monkeypatch.setattr(image_module, "load_image_encoder", image_encoder)
    monkeypatch.setenv("GENREC_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "sid"
    args = ["sid", "toy", "--output-dir", str(out), "--codebook-size", "4", "--modalities", "text,image"]
    args += [
        "--image-encoder",
        "my-encoder",
        "--layout",
        "per-modality",
        "--modality-levels",
        "text=2,image=1",
    ]
    assert main(args) == 0
    diagnostics = json.loads(capsys.readouterr().out.split("\nsaved:")[0])
    assert len(diagnostics["category_purity"]) == 3 and diagnostics["missing_modality_items"]["image"] == 0
    sid = SemanticIDs.from_pretrained(out, catalog=toy.catalog)
    assert sid.build_config["layout"] == "per_modality" and sid.build_config["levels"] == {
        "text": 2,
        "image": 1,
    }
    with pytest.raises(CheckpointMismatchError):
        SemanticIDs.from_pretrained(out, catalog=Catalog([Item("x")]))
