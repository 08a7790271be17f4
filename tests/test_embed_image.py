"""Image-encoder protocol, the CLIP adapter on a tiny random CLIPModel, and embedding fusion."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.data.dataset import Catalog, Item
from genrec.embed import CLIPImageEncoder, encode_images, encode_item_images, fuse_embeddings
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
    with pytest.raises(DataFormatError, match="1 items have no image"):
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
