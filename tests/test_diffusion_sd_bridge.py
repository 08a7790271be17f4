"""Soft-prompt personalization of Stable Diffusion, on a tiny randomly initialised SD built from configs."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from genrec.diffusion.sd_bridge import PersonalizedStableDiffusion, UserSoftPrompt
from genrec.errors import CheckpointMismatchError

WIDTH, USER_DIM, MAX_LEN = 32, 8, 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_tokenizer(tmp_path) -> CLIPTokenizer:
    """A character-level CLIP BPE vocabulary (no merges) written to tmp_path: no downloads needed."""
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    for ch in string.ascii_lowercase + string.digits:
        tokens += [ch, ch + "</w>"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(tmp_path / "vocab.json"),
        str(tmp_path / "merges.txt"),
        model_max_length=MAX_LEN,
        pad_token="<|endoftext|>",
    )


@pytest.fixture
def sd(tmp_path) -> StableDiffusionPipeline:
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(tmp_path)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=WIDTH,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=MAX_LEN,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=4,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=WIDTH,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32,
    )
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_soft_tokens_are_appended_to_the_prompt_states(sd):
    bridge = PersonalizedStableDiffusion(sd, UserSoftPrompt(USER_DIM, WIDTH, num_tokens=3, hidden_dim=16))
    pos, neg = bridge.encode(
        ["a red poster", "a blue poster"], torch.randn(2, USER_DIM), num_images_per_prompt=2
    )
    assert pos.shape == (4, MAX_LEN + 3, WIDTH) and neg.shape == pos.shape
    # negative side carries the learned null tokens, the positive side each user's projection
    torch.testing.assert_close(neg[:, -3:], bridge.soft_prompt.null.expand(4, -1, -1))
    assert not torch.allclose(pos[0, -3:], pos[2, -3:])  # different users -> different tokens
    torch.testing.assert_close(pos[0, -3:], pos[1, -3:])  # same user, repeated per image


def test_generation_is_user_dependent_and_deterministic(sd):
    bridge = PersonalizedStableDiffusion(sd, UserSoftPrompt(USER_DIM, WIDTH, num_tokens=2, hidden_dim=16))
    users = torch.randn(2, USER_DIM)

    def gen(user):
        return bridge(
            "a poster",
            user,
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).images

    a, b, c = gen(users[0]), gen(users[0]), gen(users[1])
    assert a.shape == (1, 8, 8, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_training_updates_only_the_soft_prompt(sd):
    bridge = PersonalizedStableDiffusion(sd, UserSoftPrompt(USER_DIM, WIDTH, num_tokens=2, hidden_dim=16))
    loss = bridge.training_loss(
        torch.rand(2, 3, 8, 8) * 2 - 1,
        ["a", "b"],
        torch.randn(2, USER_DIM),
        generator=torch.Generator().manual_seed(0),
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert bridge.soft_prompt.proj[0].weight.grad is not None
    frozen = [sd.unet, sd.vae, sd.text_encoder]
    assert all(p.grad is None and not p.requires_grad for m in frozen for p in m.parameters())


def test_save_load_and_mismatches(sd, tmp_path):
    bridge = PersonalizedStableDiffusion(sd, UserSoftPrompt(USER_DIM, WIDTH, num_tokens=2, hidden_dim=16))
    bridge.save_pretrained(tmp_path / "soft")
    loaded = PersonalizedStableDiffusion.from_pretrained(sd, tmp_path / "soft")
    user = torch.randn(1, USER_DIM)
    torch.testing.assert_close(loaded.encode("x", user)[0], bridge.encode("x", user)[0])
    with pytest.raises(CheckpointMismatchError, match="user embedding has size"):
        bridge.encode("x", torch.randn(1, USER_DIM + 1))
    with pytest.raises(CheckpointMismatchError, match="wide"):
        PersonalizedStableDiffusion(sd, UserSoftPrompt(USER_DIM, WIDTH * 2))
