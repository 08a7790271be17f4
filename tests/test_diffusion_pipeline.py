"""PersonalizedThumbnailPipeline: outputs, determinism, guidance composition, save/load, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from PIL import Image

from genrec.diffusion import PersonalizedThumbnailPipeline, ThumbnailConditioner, build_unet, build_vae
from genrec.errors import CheckpointMismatchError, EmptyHistoryError, UnknownItemError
from genrec.users import MeanItemEncoder

IDS = ["a", "b", "c", "d", "e"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


DIM = 6


def make_pipeline(
    latent: bool = True,
    user_encoder: str = "mean",
    cross: int = 16,
    num_user_tokens: int = 2,
    history_tokens: int = 0,
) -> PersonalizedThumbnailPipeline:
    torch.manual_seed(0)
    emb = np.random.default_rng(0).normal(size=(len(IDS), DIM)).astype(np.float32)
    cond = ThumbnailConditioner(
        user_dim=DIM,
        cross_attention_dim=cross,
        item_dim=DIM,
        hidden_dim=16,
        num_user_tokens=num_user_tokens,
        history_tokens=history_tokens,
        user_encoder=user_encoder,
        num_items=len(IDS),
        table_dim=DIM,
        catalog_ids=IDS,
    )
    cond.set_item_embeddings(emb / np.linalg.norm(emb, axis=1, keepdims=True))
    vae = build_vae((8, 16), latent_channels=4, sample_size=8) if latent else None
    unet = build_unet(
        sample_size=4 if latent else 8,
        in_channels=4 if latent else 3,
        block_out_channels=(16, 32),
        cross_attention_dim=16,
        attention_head_dim=8,
    )
    return PersonalizedThumbnailPipeline(
        unet=unet.eval(), scheduler=DPMSolverMultistepScheduler(), conditioner=cond.eval(), vae=vae
    )


@pytest.fixture
def pipe() -> PersonalizedThumbnailPipeline:
    p = make_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


def run(pipe, seed: int = 0, **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    return pipe(generator=torch.Generator().manual_seed(seed), **kwargs).images


def test_output_types_and_shapes(pipe):
    pil = run(pipe, user_history=["a", "b"], item="c", num_images=3)
    assert len(pil) == 3 and all(isinstance(im, Image.Image) and im.size == (8, 8) for im in pil)
    arr = run(pipe, user_history=[["a"], ["b", "c"]], num_images=2, output_type="np")
    assert arr.shape == (4, 8, 8, 3) and arr.min() >= 0 and arr.max() <= 1
    pt = run(pipe, user_embedding=torch.randn(2, DIM), output_type="pt")
    assert pt.shape == (2, 3, 8, 8)
    lat = run(pipe, user_history=["a"], num_images=2, output_type="latent")
    assert lat.shape == (2, 4, 4, 4)


def test_pixel_space_pipeline():
    p = make_pipeline(latent=False)
    p.set_progress_bar_config(disable=True)
    assert run(p, user_history=["a"], output_type="np").shape == (1, 8, 8, 3)


def test_fixed_generator_is_deterministic(pipe):
    a = run(pipe, user_history=["a", "b"], item="c", num_images=2, output_type="np")
    b = run(pipe, user_history=["a", "b"], item="c", num_images=2, output_type="np")
    c = run(pipe, seed=1, user_history=["a", "b"], item="c", num_images=2, output_type="np")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_history_encoding_matches_mean_item_encoder(pipe):
    table = pipe.conditioner.item_embeddings.numpy()
    expected = MeanItemEncoder(table).encode([np.array([0, 2])])
    torch.testing.assert_close(pipe.encode_user(["a", "c"]).vector, expected)


def test_guidance_scales_zero_drop_the_condition(pipe):
    """s_u = 0 ignores the user; s_i = 0 ignores the item; both 0 is the unconditional model."""
    user = torch.randn(1, DIM)
    uncond = run(pipe, output_type="np")
    user_only = run(pipe, user_embedding=user, output_type="np")
    np.testing.assert_allclose(
        run(pipe, user_embedding=user, user_guidance_scale=0.0, output_type="np"), uncond, atol=1e-5
    )
    np.testing.assert_allclose(
        run(pipe, user_embedding=user, item="b", item_guidance_scale=0.0, output_type="np"),
        user_only,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        run(
            pipe,
            user_embedding=user,
            item="b",
            user_guidance_scale=0.0,
            item_guidance_scale=0.0,
            output_type="np",
        ),
        uncond,
        atol=1e-5,
    )
    assert not np.allclose(user_only, uncond)


@pytest.mark.parametrize(
    ("has_user", "has_item", "expected"),
    [
        (False, False, [1.0]),
        (True, False, [-2.0, 3.0]),
        (False, True, [-1.0, 2.0]),
        (True, True, [-2.0, 1.0, 2.0]),
    ],
)
def test_guidance_branch_weights(has_user, has_item, expected):
    u = torch.zeros(1, DIM) if has_user else None
    i = torch.zeros(1, DIM) if has_item else None
    branches, weights = PersonalizedThumbnailPipeline._guidance_branches(u, i, 3.0, 2.0)
    assert weights == pytest.approx(expected)
    assert sum(weights) == pytest.approx(1.0)  # an affine combination of noise predictions
    assert len(branches) == len(weights) and branches[0] == (None, None)


def test_dropped_condition_equals_null_tokens(pipe):
    cond = pipe.conditioner
    user, item = torch.randn(2, DIM), torch.randn(2, DIM)
    drop = torch.tensor([True, True])
    torch.testing.assert_close(cond(user, item, drop_user=drop), cond(None, item))
    torch.testing.assert_close(cond(user, item, drop_item=drop), cond(user, None))
    torch.testing.assert_close(
        cond(user, item, drop_user=drop, drop_item=drop), cond(None, None, batch_size=2)
    )


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    loaded = PersonalizedThumbnailPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(
        run(loaded, user_history=["a", "d"], item="b", num_images=2, output_type="np"),
        run(pipe, user_history=["a", "d"], item="b", num_images=2, output_type="np"),
        atol=1e-6,
    )
    assert len(run(loaded, user_history=["a", "b", "e"], num_images=4)) == 4


def test_unknown_items_raise(pipe):
    with pytest.raises(UnknownItemError, match="zzz"):
        run(pipe, user_history=["a", "zzz"])
    with pytest.raises(UnknownItemError, match="nope"):
        run(pipe, user_history=["a"], item="nope")


def test_condition_size_mismatch_fails_clearly(pipe, tmp_path):
    with pytest.raises(CheckpointMismatchError, match="user embedding has size 7"):
        run(pipe, user_embedding=torch.randn(1, DIM + 1))
    pipe.save_pretrained(tmp_path / "p")
    cfg_path = tmp_path / "p" / "conditioner" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["user_dim"] = cfg["table_dim"] = DIM + 3  # weights saved for DIM-wide users, config says DIM + 3
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatchError, match="condition sizes differ"):
        PersonalizedThumbnailPipeline.from_pretrained(tmp_path / "p")


def test_components_must_agree():
    p = make_pipeline()
    with pytest.raises(CheckpointMismatchError, match="cross_attention_dim"):
        PersonalizedThumbnailPipeline(
            unet=p.unet, scheduler=p.scheduler, conditioner=make_pipeline(cross=32).conditioner
        )
    with pytest.raises(CheckpointMismatchError, match="in_channels"):
        PersonalizedThumbnailPipeline(unet=p.unet, scheduler=p.scheduler, conditioner=p.conditioner, vae=None)


def test_external_encoder_needs_vectors_or_an_encoder():
    p = make_pipeline(user_encoder="external")
    p.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match="external user encoder"):
        run(p, user_history=["a"])
    table = p.conditioner.item_embeddings.numpy()
    out = run(p, user_history=["a", "b"], user_encoder=MeanItemEncoder(table), output_type="np")
    assert out.shape == (1, 8, 8, 3)


def test_unet_attention_levels():
    from genrec.diffusion.models import build_unet

    default = build_unet(block_out_channels=(16, 32, 32), cross_attention_dim=16, attention_head_dim=8)
    assert default.config.down_block_types == ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    cheap = build_unet(
        block_out_channels=(16, 32, 32), cross_attention_dim=16, attention_head_dim=8, first_attention_level=1
    )
    assert cheap.config.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    assert cheap.config.up_block_types == ("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    with pytest.raises(ValueError, match="first_attention_level"):
        build_unet(block_out_channels=(16, 32), first_attention_level=1)


@pytest.mark.parametrize("global_condition", [True, False])
def test_global_condition_reaches_every_block(global_condition):
    """With ``global_condition`` the mean condition token enters the timestep embedding, so the output
    depends on the condition even when cross-attention is zeroed out; without it, it cannot."""
    from genrec.diffusion.models import predict_noise

    torch.manual_seed(0)
    unet = build_unet(
        sample_size=8,
        block_out_channels=(16, 32),
        cross_attention_dim=16,
        attention_head_dim=8,
        global_condition=global_condition,
    ).eval()
    assert (unet.class_embedding is not None) == global_condition
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "attn2.to_out" in name:  # silence cross-attention
                p.zero_()
        x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 10])
        a = predict_noise(unet, x, t, torch.randn(2, 3, 16))
        b = predict_noise(unet, x, t, torch.randn(2, 3, 16))
    assert a.shape == x.shape
    assert (not torch.allclose(a, b)) == global_condition


# -- the user as a set of history items ---------------------------------------------------------------


@pytest.fixture
def set_pipe() -> PersonalizedThumbnailPipeline:
    p = make_pipeline(num_user_tokens=0, history_tokens=3)
    p.set_progress_bar_config(disable=True)
    return p


def test_history_index_is_most_recent_first_and_padded(set_pipe):
    index = set_pipe.conditioner.history_index([np.array([0, 1, 2, 3]), np.array([4])])
    assert index.tolist() == [[3, 2, 1], [4, -1, -1]]
    cond = set_pipe.encode_user([["a", "b", "c", "d"], ["e"]])
    assert cond.vector is None and cond.history.tolist() == [[3, 2, 1], [4, -1, -1]]


def test_history_tokens_follow_the_items(set_pipe):
    cond = set_pipe.conditioner
    tokens = cond(None, None, history=torch.tensor([[0, 1, -1], [0, 1, -1], [2, 1, -1], [-1, -1, -1]]))
    assert tokens.shape == (4, cond.num_tokens, 16)
    torch.testing.assert_close(tokens[0], tokens[1])  # same history, same tokens
    assert not torch.allclose(tokens[0, 0], tokens[2, 0])  # a different item in slot 0
    torch.testing.assert_close(tokens[0, 1:], tokens[2, 1:])  # the other slots are untouched
    # empty slots and dropped users read the null tokens
    torch.testing.assert_close(tokens[3], cond(None, None, batch_size=1)[0])
    dropped = cond(None, None, history=torch.tensor([[0, 1, 2]]), drop_user=torch.tensor([True]))
    torch.testing.assert_close(dropped, cond(None, None, batch_size=1))


def test_set_pipeline_samples_per_history_and_round_trips(set_pipe, tmp_path):
    a = run(set_pipe, user_history=["a", "b"], output_type="np")
    assert not np.allclose(a, run(set_pipe, user_history=["c", "d"], output_type="np"))
    set_pipe.save_pretrained(tmp_path / "p")
    loaded = PersonalizedThumbnailPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(loaded, user_history=["a", "b"], output_type="np"), a, atol=1e-6)
    with pytest.raises(ValueError, match="pass user_history="):
        run(set_pipe, user_embedding=torch.randn(1, DIM))


def test_set_conditioner_needs_a_user_token():
    with pytest.raises(ValueError, match="num_user_tokens > 0 or history_tokens > 0"):
        make_pipeline(num_user_tokens=0, history_tokens=0)


# -- img2img: personalised variants that start from the item's own image ---------------------------


@pytest.mark.parametrize("latent", [True, False])
def test_img2img_strength_sets_how_far_from_the_image(latent):
    """In the UNet's space, the result moves away from the encoded image as strength grows."""
    p = make_pipeline(latent=latent)
    p.set_progress_bar_config(disable=True)
    image = np.random.default_rng(1).uniform(0.2, 0.8, size=(1, 8, 8, 3)).astype(np.float32)
    start = p.encode_image(image)
    kw = dict(user_history=["a"], num_inference_steps=20, output_type="latent")
    dist = [(run(p, image=image, strength=s, **kw) - start).abs().mean().item() for s in (0.05, 0.3, 1.0)]
    assert dist[0] < 0.2 and dist[0] < dist[1] < dist[2]
    # broadcast: one image for two users, and two images per user
    both = run(p, user_history=[["a"], ["d", "e"]], image=image, strength=0.5, num_images=2, output_type="np")
    assert both.shape == (4, 8, 8, 3)


def test_img2img_rejects_bad_strength(pipe):
    with pytest.raises(ValueError, match="strength must be in"):
        run(pipe, user_history=["a"], image=np.zeros((1, 8, 8, 3), np.float32), strength=0.0)


# -- the CLI ------------------------------------------------------------------------------------------


def test_cli_user_thumbnails_item_variants_and_bad_input(pipe, tmp_path):
    from genrec.cli import main

    pipe.save_pretrained(tmp_path / "p")
    poster = tmp_path / "c.png"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(poster)
    common = ["--steps", "2", "--num-images", "2"]
    out = tmp_path / "variants"
    args = ["thumbnails", str(tmp_path / "p"), "a", "b", "--item", "c", "--image", str(poster)]
    assert main([*args, "--strength", "0.5", *common, "--output-dir", str(out)]) == 0
    assert sorted(f.name for f in out.iterdir()) == ["thumbnail_0.png", "thumbnail_1.png"]
    assert Image.open(out / "thumbnail_0.png").size == (8, 8)
    assert (
        main(["thumbnails", str(tmp_path / "p"), "--unconditional", *common, "--output-dir", str(out)]) == 0
    )

    with pytest.raises(EmptyHistoryError, match="--unconditional"):
        main(["thumbnails", str(tmp_path / "p"), *common])
    with pytest.raises(UnknownItemError, match="zzz"):
        main(["thumbnails", str(tmp_path / "p"), "a", "zzz", *common])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg: cannot decode"):
        main(["thumbnails", str(tmp_path / "p"), "a", "--item", "c", "--image", str(broken), *common])
    with pytest.raises(ValueError, match="give the item with --item"):
        main(["thumbnails", str(tmp_path / "p"), "a", "--image", str(poster), *common])
