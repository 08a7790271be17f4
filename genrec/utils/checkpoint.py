"""One checkpoint format and one resume path for every training loop in genrec.

The compact model and the LLM train on transformers' ``Trainer``, which writes ``checkpoint-<step>``
folders and ``trainer_state.json`` last. The loops it cannot run (RQ-VAE, image pretraining, SASRec, the
diffusion stages, SD soft prompts) write the same layout through :func:`save_checkpoint`::

    checkpoint-<step>/
        <name>.safetensors       one per module or tensor group (weights, EMA shadows, best weights)
        optimizer.pt             optimizer / scheduler state dicts, read back with ``weights_only=True``
        rng_state.safetensors    torch's global RNG and the loop's own generators
        trainer_state.json       step, the resume key, and the loop's state (history, best epoch, ...)

and every loop, Trainer-run or not, finds where to resume with :func:`latest_checkpoint`. A checkpoint is
filled in a hidden staging folder and renamed into place, so ``checkpoint-<step>`` only ever exists whole
(weights, optimizer and state of one step); the newest ``keep`` are kept. The resume key holds the settings
a resumed run must share with the saved one; :func:`load_checkpoint` names every one that differs.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from genrec.errors import CheckpointMismatchError
from genrec.utils.io import atomic_write_json, read_json
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)

TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
RNG_STATE = "rng_state.safetensors"
_GLOBAL_RNG = "torch"
_NAME = re.compile(r"checkpoint-(\d+)")


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` read: the step and the loop's own ``state``."""

    path: Path
    step: int
    state: dict[str, Any]

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        """A tensor group saved with ``save_checkpoint(tensors={name: ...})``."""
        return load_file(self.path / f"{name}.safetensors")


def checkpoint_steps(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Every ``checkpoint-<step>`` folder in ``output_dir`` (complete or not), oldest first."""
    found = [
        (int(m.group(1)), p) for p in Path(output_dir).glob("checkpoint-*") if (m := _NAME.fullmatch(p.name))
    ]
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in ``output_dir``, or None.

    ``trainer_state.json`` is written last (by transformers too), so a folder without it is a save cut
    short by a kill: it is removed, and the previous checkpoint, kept until then, is the one.
    """
    for _, path in reversed(checkpoint_steps(output_dir)):
        if (path / TRAINER_STATE).is_file():
            return path
        logger.warning("%s is incomplete (no %s): removing it", path, TRAINER_STATE)
        shutil.rmtree(path, ignore_errors=True)
    return None


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    *,
    modules: Mapping[str, torch.nn.Module] | None = None,
    tensors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    optimizers: Mapping[str, Any] | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    resume_key: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``output_dir/checkpoint-<step>`` whole (see the module docstring), then drop all but the newest
    ``keep``. ``optimizers`` are anything with ``state_dict()`` (optimizers, LR schedulers); ``state`` must
    be JSON-serialisable. torch's global RNG is always saved."""
    out = Path(output_dir)
    path = out / f"checkpoint-{step}"
    staging = out / f".checkpoint-{step}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    groups = {name: m.state_dict() for name, m in (modules or {}).items()} | dict(tensors or {})
    for name, group in groups.items():
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in group.items()}, str(staging / f"{name}.safetensors")
        )
    if optimizers:
        torch.save({name: o.state_dict() for name, o in optimizers.items()}, staging / OPTIMIZER)
    rng = {_GLOBAL_RNG: torch.get_rng_state()} | {
        name: g.get_state() for name, g in (generators or {}).items()
    }
    save_file(rng, str(staging / RNG_STATE))
    meta = {"step": step, "resume_key": dict(resume_key or {}), "state": dict(state or {})}
    atomic_write_json(staging / TRAINER_STATE, meta)
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    for _, old in checkpoint_steps(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint(
    path: str | Path,
    *,
    modules: Mapping[str, torch.nn.Module] | None = None,
    optimizers: Mapping[str, Any] | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    resume_key: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Restore a :func:`save_checkpoint` folder in place: ``modules``, ``optimizers``, ``generators`` and
    torch's global RNG (tensor groups load on demand: :meth:`Checkpoint.tensors`). First raises
    :class:`CheckpointMismatchError` naming each ``resume_key`` field whose saved value differs."""
    path = Path(path)
    meta = read_json(path / TRAINER_STATE)
    saved_key = meta.get("resume_key", {})
    diff = [
        f"{k}={saved_key.get(k)!r} (this run: {v!r})"
        for k, v in (resume_key or {}).items()
        if _jsonable(v) != saved_key.get(k)
    ]
    if diff:
        raise CheckpointMismatchError(
            f"{path / TRAINER_STATE}: saved with {'; '.join(diff)}. Start a new output folder or match these"
        )
    for name, module in (modules or {}).items():
        module.load_state_dict(load_file(path / f"{name}.safetensors"))
    if optimizers:
        saved = torch.load(path / OPTIMIZER, weights_only=True, map_location="cpu")
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(saved[name])
    rng = load_file(path / RNG_STATE)
    torch.set_rng_state(rng[_GLOBAL_RNG])
    for name, generator in (generators or {}).items():
        generator.set_state(rng[name])
    logger.info("resuming from %s (step %d)", path, meta["step"])
    return Checkpoint(path, int(meta["step"]), meta["state"])


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so saved and current keys compare."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
