"""Thumbnail training: robust image loading, training pairs, checkpoints and resume, the recipe."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.diffusion import PersonalizedThumbnailPipeline, ThumbnailTrainer, ThumbnailTrainingConfig
from genrec.diffusion.data import PairSampler, hold_out, load_item_images
from genrec.errors import CheckpointMismatchError

NUM_GOOD = 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def toy(tmp_path: Path) -> SequenceDataset:
    """12 drawn images (one PNG saved as .jpg), one corrupted file, one missing file, one item without."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(NUM_GOOD):
        img = Image.new("RGB", (20, 30), tuple(int(c) for c in rng.integers(0, 255, 3)))
        ImageDraw.Draw(img).ellipse((2, 2, 15, 20), fill=(255, 255, 0) if i % 2 else (0, 0, 255))
        path = tmp_path / f"{i}.jpg"
        img.save(path, format="PNG" if i == 3 else "JPEG")
        items.append(Item(str(i), f"item {i}", {"categories": ["odd" if i % 2 else "even"]}, str(path)))
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    items.append(Item("corrupt", "corrupt", {}, str(tmp_path / "corrupt.jpg")))
    items.append(Item("missing", "missing", {}, str(tmp_path / "missing.jpg")))
    items.append(Item("noimage", "no image", {}, None))
    seqs = [rng.integers(0, len(items), 8) for _ in range(12)]
    return SequenceDataset("toy", Catalog(items), [f"u{i}" for i in range(12)], seqs)


def tiny_config(output_dir: Path, **overrides) -> ThumbnailTrainingConfig:
    values = dict(
        output_dir=str(output_dir),
        image_size=8,
        test_user_fraction=0.2,
        test_item_fraction=0.1,
        vae_block_out_channels=[8, 16],
        vae_steps=2,
        vae_batch_size=4,
        vae_crop_size=None,
        unet_block_out_channels=[16, 32],
        cross_attention_dim=16,
        attention_head_dim=8,
        condition_hidden_dim=16,
        train_steps=4,
        batch_size=4,
        save_every=2,
        sample_every=4,
        num_sample_users=2,
        sample_steps=2,
    )
    values.update(overrides)
    return ThumbnailTrainingConfig(**values)


def embeddings(dataset: SequenceDataset) -> np.ndarray:
    emb = np.random.default_rng(1).normal(size=(dataset.num_items, 6)).astype(np.float32)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_bad_images_are_skipped_and_counted(toy, caplog):
    with caplog.at_level(logging.WARNING, logger="genrec.diffusion.data"):
        images = load_item_images(toy.catalog, 8, progress=False)
    assert len(images.indices) == NUM_GOOD  # the PNG named .jpg decodes by content
    assert sorted(toy.catalog[i].id for i in images.skipped) == ["corrupt", "missing"]
    assert "2 of 14 item images could not be read" in caplog.text
    assert images.pixels.shape == (NUM_GOOD, 3, 8, 8) and images.pixels.dtype == torch.uint8
    assert not images.has_image[[12, 13, 14]].any()


def test_pairs_use_training_positions_of_training_users_only(toy):
    images = load_item_images(toy.catalog, 8, progress=False)
    holdout = hold_out(toy, 0.25, 0.2, seed=0)
    sampler = PairSampler(toy, images, holdout, history_max_len=3, seed=0)
    held_users = set(holdout.test_users.tolist())
    assert not held_users & set(sampler.users.tolist())
    train = toy.train_sequences()
    assert all(0 < t < len(train[u]) for u, t in zip(sampler.users, sampler.positions))
    histories, targets = sampler.sample(64)
    assert images.has_image[targets].all() and not np.isin(targets, holdout.test_items).any()
    assert all(1 <= len(h) <= 3 for h in histories)


def test_history_pairs_condition_on_the_users_other_training_items(toy):
    """target="history": the target is one of the user's training items and the condition is the rest."""
    images = load_item_images(toy.catalog, 8, progress=False)
    holdout = hold_out(toy, 0.25, 0.2, seed=0)
    sampler = PairSampler(toy, images, holdout, history_max_len=50, seed=0, target="history")
    train = toy.train_sequences()
    assert (sampler.positions == 0).any()  # the first item can be a target too
    for u, t in zip(sampler.users[:20], sampler.positions[:20]):
        sampler.users, sampler.positions = np.array([u]), np.array([t])
        (history,), (target,) = sampler.sample(1)
        assert target == train[u][t]
        assert history.tolist() == np.delete(train[u], t).tolist()
    with pytest.raises(ValueError, match="pair target"):
        PairSampler(toy, images, holdout, target="future")


@pytest.mark.parametrize("target", ["history", "next"])
def test_target_re_enters_its_history_at_a_recent_slot(toy, target):
    """target_in_history=1: every condition is the usual one with the target inserted among its last
    `recent_slots` positions; 0 leaves the usual pairs (and the sampler's stream) untouched."""
    images = load_item_images(toy.catalog, 8, progress=False)
    holdout = hold_out(toy, 0.25, 0.2, seed=0)
    train = toy.train_sequences()
    usual = PairSampler(toy, images, holdout, seed=3, target=target, target_in_history=0.0, recent_slots=2)
    plain = PairSampler(toy, images, holdout, seed=3, target=target)
    for (h0, t0), (h1, t1) in zip(zip(*usual.sample(32)), zip(*plain.sample(32))):
        assert t0 == t1 and h0.tolist() == h1.tolist()
    sampler = PairSampler(toy, images, holdout, seed=3, target=target, target_in_history=1.0, recent_slots=2)
    slots_seen = set()
    for u, t in zip(sampler.users, sampler.positions):
        sampler.users, sampler.positions = np.array([u]), np.array([t])
        (history,), (item,) = sampler.sample(1)
        rest = train[u][:t] if target == "next" else np.delete(train[u], t)
        from_end = len(history) - 1 - int(np.flatnonzero(history == item)[-1])
        assert from_end < 2
        assert np.delete(history, len(history) - 1 - from_end).tolist() == rest.tolist()
        slots_seen.add(from_end)
    assert slots_seen == {0, 1}  # both recent slots are used, not only the newest
    with pytest.raises(ValueError, match="target_in_history"):
        PairSampler(toy, images, holdout, target_in_history=1.5)
    with pytest.raises(ValueError, match="target_in_history"):
        ThumbnailTrainingConfig(target_in_history=-0.1)


def test_training_survives_bad_images_and_resume_continues_exactly(toy, tmp_path):
    emb = embeddings(toy)
    straight = ThumbnailTrainer(tiny_config(tmp_path / "a"), toy, emb, progress=False)
    pipe = straight.train()
    assert isinstance(pipe, PersonalizedThumbnailPipeline)
    assert len(straight.images.skipped) == 2
    assert (tmp_path / "a" / "samples" / "step-000004.png").is_file()
    assert not (tmp_path / "a" / "vae-checkpoints").exists()  # the finished VAE replaces its checkpoints
    assert (tmp_path / "a" / "pipeline" / "model_index.json").is_file()

    ThumbnailTrainer(tiny_config(tmp_path / "b", train_steps=2), toy, emb, progress=False).train()
    resumed = ThumbnailTrainer(tiny_config(tmp_path / "b"), toy, emb, progress=False)
    resumed.train(resume=True)
    assert len(resumed.step_times) == 2  # only steps 3 and 4 ran
    for sub in ("unet", "conditioner", "ema_unet", "ema_conditioner"):
        a = load_file(tmp_path / "a" / "checkpoint-4" / f"{sub}.safetensors")
        b = load_file(tmp_path / "b" / "checkpoint-4" / f"{sub}.safetensors")
        for name in a:
            torch.testing.assert_close(a[name], b[name], msg=f"{sub}.{name} differs after resume")

    loaded = PersonalizedThumbnailPipeline.from_pretrained(tmp_path / "a" / "pipeline")
    loaded.set_progress_bar_config(disable=True)
    assert len(loaded(user_history=["0", "5"], item="2", num_images=2, num_inference_steps=2).images) == 2


def test_vae_stage_killed_mid_run_resumes_to_the_same_weights(toy, tmp_path, monkeypatch):
    import genrec.diffusion.trainer as trainer

    emb = embeddings(toy)
    config = dict(vae_steps=4, train_steps=1)
    ThumbnailTrainer(tiny_config(tmp_path / "a", **config), toy, emb, progress=False).train()
    save = trainer.save_checkpoint

    def save_then_die(out, step, **kw):
        save(out, step, **kw)
        raise KeyboardInterrupt  # killed right after the VAE's step-2 checkpoint

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        ThumbnailTrainer(tiny_config(tmp_path / "b", **config), toy, emb, progress=False).train()
    assert (tmp_path / "b" / "vae-checkpoints" / "checkpoint-2").is_dir()
    monkeypatch.setattr(trainer, "save_checkpoint", save)
    forward, steps = trainer._VAELoss.forward, []
    monkeypatch.setattr(trainer._VAELoss, "forward", lambda self, x: steps.append(1) or forward(self, x))
    ThumbnailTrainer(tiny_config(tmp_path / "b", **config), toy, emb, progress=False).train(resume=True)
    assert len(steps) == 2  # steps 3 and 4 only
    a = load_file(tmp_path / "a" / "vae" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "b" / "vae" / "diffusion_pytorch_model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=f"vae.{name} differs after resume")


def test_resume_with_other_condition_size_fails(toy, tmp_path):
    emb = embeddings(toy)
    ThumbnailTrainer(tiny_config(tmp_path, latent=False, train_steps=2), toy, emb, progress=False).train()
    other = ThumbnailTrainer(
        tiny_config(tmp_path, latent=False, train_steps=4, num_user_tokens=3), toy, emb, progress=False
    )
    with pytest.raises(CheckpointMismatchError, match="num_user_tokens"):
        other.train(resume=True)


def test_history_set_conditioning_trains_and_resumes_exactly(toy, tmp_path):
    """The user as a set of history tokens (no mean vector): trained, resumed to the same weights."""
    emb = embeddings(toy)
    config = dict(latent=False, num_user_tokens=0, history_tokens=3, pair_target="history")
    fresh = ThumbnailTrainer(tiny_config(tmp_path / "a", **config), toy, emb, progress=False)
    initial = fresh.build_models()[1].state_dict()
    pipe = ThumbnailTrainer(tiny_config(tmp_path / "a", **config), toy, emb, progress=False).train()
    ThumbnailTrainer(tiny_config(tmp_path / "b", train_steps=2, **config), toy, emb, progress=False).train()
    ThumbnailTrainer(tiny_config(tmp_path / "b", **config), toy, emb, progress=False).train(resume=True)
    path = "checkpoint-4/conditioner.safetensors"
    a, b = load_file(tmp_path / "a" / path), load_file(tmp_path / "b" / path)
    assert "history_proj.0.weight" in a and not any(k.startswith("user_proj") for k in a)
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=f"conditioner.{name} differs after resume")
    assert not torch.equal(a["history_proj.0.weight"], initial["history_proj.0.weight"])
    ids = [toy.catalog[i].id for i in (0, 3, 5)]
    assert pipe(user_history=ids, num_inference_steps=2, output_type="np").images.shape[0] == 1
    other = ThumbnailTrainer(
        tiny_config(tmp_path / "b", train_steps=6, **{**config, "history_tokens": 5}), toy, emb
    )
    with pytest.raises(CheckpointMismatchError, match="history_tokens"):
        other.train(resume=True)


def test_config_rejects_unknown_fields():
    with pytest.raises(ValueError, match="train_stepz"):
        ThumbnailTrainingConfig.from_dict({"train_stepz": 3})
    with pytest.raises(ValueError, match="prediction_type"):
        ThumbnailTrainingConfig(prediction_type="x0")
    with pytest.raises(ValueError, match="pair_target"):
        ThumbnailTrainingConfig(pair_target="future")


def test_training_target_per_prediction_type():
    from diffusers import DDPMScheduler

    from genrec.diffusion.trainer import _training_target

    scheduler = DDPMScheduler(num_train_timesteps=10)
    x0, noise, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([1, 7])
    assert torch.equal(_training_target("epsilon", scheduler, x0, noise, t), noise)
    assert torch.equal(_training_target("sample", scheduler, x0, noise, t), x0)
    velocity = _training_target("v_prediction", scheduler, x0, noise, t)
    torch.testing.assert_close(velocity, scheduler.get_velocity(x0, noise, t))


def test_x0_prediction_with_history_pairs_trains_and_samples(toy, tmp_path):
    config = tiny_config(
        tmp_path, latent=False, train_steps=2, prediction_type="sample", pair_target="history"
    )
    pipe = ThumbnailTrainer(config, toy, embeddings(toy), progress=False).train()
    assert pipe.scheduler.config.prediction_type == "sample"
    images = pipe(user_history=[toy.catalog[0].id], num_inference_steps=2, output_type="np").images
    assert images.shape[0] == 1 and np.isfinite(images).all() and 0 <= images.min() <= images.max() <= 1


@pytest.mark.slow
def test_recipe_script_on_synthetic(tmp_path):
    """The thin script end to end on the synthetic catalog's procedural thumbnails (real MiniLM)."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "train_thumbnails", root / "recipes" / "train_thumbnails.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "run"
    sets = [
        "data.num_users=30",
        "data.num_items=32",
        "data.num_categories=4",
        f"data.image_dir={tmp_path / 'img'}",
        "data.image_size=8",
        f"item_text.cache_dir={tmp_path / 'emb'}",
        f"training.output_dir={out}",
        "training.image_size=8",
        "training.unet_block_out_channels=[16,16,32]",
        "training.cross_attention_dim=16",
        "training.attention_head_dim=8",
        "training.train_steps=2",
        "training.batch_size=4",
        "training.save_every=1",
        "training.sample_every=2",
        "training.sample_steps=2",
    ]
    args = ["--config", str(root / "recipes" / "thumbnails_synthetic.yaml"), "--threads", "1"]
    script.main(args + [f"--set={s}" for s in sets])
    script.main(args + [f"--set={s}" for s in sets[:-4]] + ["--set=training.train_steps=3", "--resume"])
    assert (out / "checkpoint-3").is_dir() and (out / "samples" / "step-000002.png").is_file()
    pipe = PersonalizedThumbnailPipeline.from_pretrained(out / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        user_history=[pipe.conditioner.config.catalog_ids[0]], num_images=2, num_inference_steps=2
    ).images
    assert [im.size for im in images] == [(8, 8), (8, 8)]


def test_sample_schedulers():
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    from genrec.diffusion.trainer import make_sample_scheduler

    cosine = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    assert isinstance(make_sample_scheduler(cosine, "ddim"), DDIMScheduler)
    assert isinstance(make_sample_scheduler(cosine, "ddpm"), DDPMScheduler)
    assert isinstance(
        make_sample_scheduler(DDPMScheduler(beta_schedule="scaled_linear"), "dpmsolver"),
        DPMSolverMultistepScheduler,
    )
    with pytest.raises(ValueError, match="unstable"):
        make_sample_scheduler(cosine, "dpmsolver")
    with pytest.raises(ValueError, match="sample_scheduler must be"):
        make_sample_scheduler(cosine, "euler")
