"""Image-encoder protocol, the CLIP adapter on a tiny random CLIPModel, and embedding fusion."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.data.dataset import Catalog, Item
from genrec.embed import (
    CLIPImageEncoder,
    embed_item_images,
    encode_images,
    encode_item_images,
    encode_item_modalities,
    fuse_embeddings,
    load_image_encoder,
)
from genrec.errors import DataFormatError


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("imgs")
    paths = []
    for i, colour in enumerate([(255, 0, 0), (250, 10, 5), (0, 0, 255)]):
        path = folder / f"{i}.png"
        Image.new("RGB", (40, 30), colour).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def tiny_clip():
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=12,
    )
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return CLIPModel(config), processor


def test_clip_adapter_encodes_images(tiny_clip, image_paths):
    model, processor = tiny_clip
    encoder = CLIPImageEncoder(model=model, processor=processor, device="cpu", batch_size=2)
    emb = encode_images(image_paths, encoder)
    assert emb.shape == (3, 12) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        emb, encode_images(image_paths[::-1], encoder)[::-1], atol=1e-5
    )  # batch-independent


def test_clip_adapter_rejects_unreadable_image(tiny_clip, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    encoder = CLIPImageEncoder(model=tiny_clip[0], processor=tiny_clip[1], device="cpu")
    with pytest.raises(DataFormatError, match="bad.jpg"):
        encoder.encode([str(bad)])


def test_any_callable_or_encode_object_is_an_image_encoder(image_paths):
    def fn(paths):
        return np.arange(len(paths) * 4, dtype=np.float32).reshape(len(paths), 4) + 1

    class Obj:
        def encode(self, paths):
            return fn(paths)

    a, b = encode_images(image_paths, fn), encode_images(image_paths, Obj())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        encode_images(image_paths, lambda paths: np.zeros((1, 4)))
    with pytest.raises(TypeError, match="callable"):
        encode_images(image_paths, 3)  # type: ignore[arg-type]


def test_item_images_missing_policy(image_paths):
    catalog = Catalog([Item("a", image=image_paths[0]), Item("b"), Item("c", image=image_paths[2])])
    encoder = lambda paths: np.ones((len(paths), 3), dtype=np.float32)  # noqa: E731
    with pytest.raises(DataFormatError, match="1 items have no usable image"):
        encode_item_images(catalog, encoder)
    emb = encode_item_images(catalog, encoder, missing="zeros")
    assert emb.shape == (3, 3) and not emb[1].any() and emb[0].any()


def test_fusion_concat_and_sum():
    text = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    image = np.array([[0.0, 2.0, 0.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    fused = fuse_embeddings([text, image], "concat", weights=[3, 1])
    assert fused.shape == (2, 5)
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-6)
    # Dot products of fused vectors are the weighted mean of per-modality cosines.
    t, i = (
        text / np.linalg.norm(text, axis=1, keepdims=True),
        image / np.linalg.norm(image, axis=1, keepdims=True),
    )
    assert fused[0] @ fused[1] == pytest.approx((3 * t[0] @ t[1] + i[0] @ i[1]) / 4, abs=1e-6)
    summed = fuse_embeddings([text, text * 10], "sum")
    np.testing.assert_allclose(summed, t, atol=1e-6)


@pytest.mark.parametrize(
    "mats, kwargs, match",
    [
        ([np.ones((2, 2)), np.ones((2, 3))], {"method": "sum"}, "equal dimensions"),
        ([np.ones((2, 2)), np.ones((3, 2))], {}, "3 rows"),
        ([np.ones((2, 2))], {"weights": [1, 2]}, "2 weights"),
        ([np.ones((2, 2))], {"weights": [-1]}, "non-negative"),
        ([np.ones((2, 2))], {"method": "max"}, "concat"),
        ([np.ones(2)], {}, "2-D"),
    ],
)
def test_fusion_errors(mats, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fuse_embeddings(mats, **kwargs)


# -- user-supplied encoders by path, the image-embedding cache, corrupt images -------------------------


@pytest.fixture(scope="module")
def clip_dir(tiny_clip, tmp_path_factory):
    """The tiny random CLIPModel and its processor saved as a user's local checkpoint folder."""
    folder = tmp_path_factory.mktemp("clip")
    tiny_clip[0].save_pretrained(folder)
    tiny_clip[1].save_pretrained(folder)
    return folder


def test_clip_loads_by_path_and_embeds_images(clip_dir, tiny_clip, image_paths):
    encoder = load_image_encoder(clip_dir, device="cpu")
    assert isinstance(encoder, CLIPImageEncoder)
    emb = encode_images(image_paths, encoder)
    direct = encode_images(
        image_paths, CLIPImageEncoder(model=tiny_clip[0], processor=tiny_clip[1], device="cpu")
    )
    assert emb.shape == (3, 12)
    np.testing.assert_allclose(emb, direct, atol=1e-5)
    assert encoder.identity == CLIPImageEncoder(clip_dir, device="cpu").identity  # stable across loads


def test_siglip_loads_by_path(tmp_path, image_paths):
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(0)
    tower = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = SiglipConfig(text_config=tower, vision_config={**tower, "image_size": 32, "patch_size": 8})
    SiglipModel(config).save_pretrained(tmp_path)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    emb = encode_images(image_paths, load_image_encoder(tmp_path, device="cpu"))
    assert emb.shape == (3, 16) and np.isfinite(emb).all()


def test_open_clip_loads_by_path_when_installed(tmp_path, image_paths):
    open_clip = pytest.importorskip("open_clip")
    model = open_clip.create_model("RN50")
    ckpt = tmp_path / "rn50.pt"
    import torch

    torch.save(model.state_dict(), ckpt)
    emb = encode_images(image_paths[:1], load_image_encoder(f"open_clip:RN50:{ckpt}", device="cpu"))
    assert emb.shape[0] == 1


def test_open_clip_spec_errors():
    with pytest.raises(ValueError, match="open_clip:ARCH:CHECKPOINT"):
        load_image_encoder("open_clip:RN50")


class CountingEncoder:
    """Mean colour as the embedding; counts the images it is asked to encode."""

    identity = "counting-v1"

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, paths):
        from PIL import Image

        self.seen.extend(paths)
        return np.stack(
            [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).mean((0, 1)) + 1 for p in paths]
        )


def _colour_catalog(folder, colours):
    from PIL import Image

    items = []
    for i, colour in enumerate(colours):
        path = folder / f"item{i}.png"
        Image.new("RGB", (8, 8), colour).save(path)
        items.append(Item(str(i), image=str(path)))
    return Catalog(items)


def test_image_cache_hits_and_misses(tmp_path):
    from PIL import Image

    catalog = _colour_catalog(tmp_path, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    cache, encoder = tmp_path / "cache", CountingEncoder()
    first = embed_item_images(catalog, encoder, cache_dir=cache)
    assert (first.encoded, first.cache_hits, len(encoder.seen)) == (3, 0, 3)
    second = embed_item_images(catalog, encoder, cache_dir=cache)
    assert (second.encoded, second.cache_hits, len(encoder.seen)) == (0, 3, 3)  # read from the cache
    np.testing.assert_array_equal(first.embeddings, second.embeddings)

    Image.new("RGB", (8, 8), (9, 9, 9)).save(catalog[1].image)  # same path, new content: a miss
    third = embed_item_images(catalog, encoder, cache_dir=cache)
    assert (third.encoded, third.cache_hits) == (1, 2) and encoder.seen[-1] == catalog[1].image
    assert not np.allclose(third.embeddings[1], first.embeddings[1])
    np.testing.assert_array_equal(third.embeddings[[0, 2]], first.embeddings[[0, 2]])

    class Other(CountingEncoder):
        identity = "counting-v2"  # another model: its own cache

    assert embed_item_images(catalog, Other(), cache_dir=cache).encoded == 3
    assert embed_item_images(catalog, CountingEncoder(), cache_dir=cache, use_cache=False).cache_hits == 0


def test_corrupt_and_missing_images_are_skipped_and_counted(tmp_path, caplog):
    catalog = _colour_catalog(tmp_path, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (1, 2, 3)])
    with open(catalog[1].image, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n truncated")
    catalog[2].image = str(tmp_path / "absent.png")
    catalog[3].image = None
    result = embed_item_images(catalog, CountingEncoder(), cache_dir=tmp_path / "cache")
    assert list(result.has_image) == [True, False, False, False]
    assert set(result.corrupt) == {1} and set(result.missing) == {2, 3} and result.text_fallback == 3
    assert not result.embeddings[1:].any() and result.embeddings[0].any()
    assert "fall back to text alone" in caplog.text
    with pytest.raises(DataFormatError, match="3 items have no usable image"):
        encode_item_images(catalog, CountingEncoder())


def test_encode_item_modalities_text_and_image(tmp_path, monkeypatch):
    import genrec.embed.image as image_module

    catalog = _colour_catalog(tmp_path, [(255, 0, 0), (0, 255, 0)])
    monkeypatch.setattr(image_module, "encode_items", lambda catalog, **kw: np.eye(len(catalog), 4))
    out = encode_item_modalities(
        catalog, ["image", "text"], image_encoder=CountingEncoder(), cache_dir=tmp_path
    )
    assert list(out) == ["image", "text"] and out["image"].shape == (2, 3) and out["text"].shape == (2, 4)
    with pytest.raises(ValueError, match="needs an image encoder"):
        encode_item_modalities(catalog, ["image"])
    with pytest.raises(ValueError, match="subset"):
        encode_item_modalities(catalog, ["audio"])
