"""LoRA (and QLoRA) adapters that also train the new SID token rows, and nothing else of the embeddings.

The SID rows are trained through peft's ``trainable_token_indices``: only those rows get a delta (saved in
the standard adapter file, a few KB), every pretrained row stays frozen. For an untied output head the same
rows of ``lm_head`` are trained too; for a tied head peft ties the two deltas. ``modules_to_save`` would
instead train (and save) the whole embedding matrix, pretrained rows included.

trl's fused LM-head loss reads ``lm_head.bias``, which peft's ``TrainableTokensWrapper`` lacks, so
:class:`genrec.train.GenRecSFTTrainer` computes the loss itself from the backbone's hidden states.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from genrec.utils import get_logger

logger = get_logger(__name__)


@dataclass
class LoraSettings:
    """LoRA hyper-parameters; ``train_sid_tokens`` makes the new SID embedding rows trainable.

    ``top_layers``: adapt only the last N decoder layers. With frozen embeddings, backward then stops at the
    lowest adapted layer, so a step costs little more than a forward pass on long prompts.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    train_sid_tokens: bool = True
    top_layers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _module_name(model: Any, module: Any) -> str:
    for name, mod in model.named_modules():
        if mod is module:
            return name.rsplit(".", 1)[-1]
    raise ValueError(f"{type(module).__name__} is not a submodule of {type(model).__name__}")


def _is_tied(model: Any) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def apply_lora(model: Any, sid_token_ids: np.ndarray, settings: LoraSettings, quantized: bool = False) -> Any:
    """Wrap ``model`` in a :class:`peft.PeftModel`: LoRA on ``target_modules`` + trainable SID token rows."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    token_indices = None
    tied = _is_tied(model)
    if settings.train_sid_tokens:
        ids = [int(i) for i in sid_token_ids]
        token_indices = {_module_name(model, model.get_input_embeddings()): ids}
        if not tied and model.get_output_embeddings() is not None:
            token_indices[_module_name(model, model.get_output_embeddings())] = ids
    layers = model.config.num_hidden_layers
    if settings.top_layers is not None and not 1 <= settings.top_layers <= layers:
        raise ValueError(f"lora.top_layers must be in [1, {layers}], got {settings.top_layers}")
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        trainable_token_indices=token_indices,
        layers_to_transform=(
            None if settings.top_layers is None else list(range(layers - settings.top_layers, layers))
        ),
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info(
        "LoRA: %d trainable of %d parameters (%.3f%%)", trainable, total, 100 * trainable / max(total, 1)
    )
    return peft_model
