"""trl's :class:`~trl.SFTTrainer` with a loss that trains SID token rows and scores only answer positions.

Why not trl's own loss: its fused LM head reads ``lm_head.weight``/``lm_head.bias`` directly and fails on
peft's ``TrainableTokensWrapper`` (no ``bias``), the wrapper that trains only the new SID rows. Here the
model runs through its (DDP) wrapper, as every distributed strategy needs, and returns the final hidden
states with a single kept logit; the labelled positions then go through the merged output head, with the
SID-restricted softmax of :mod:`genrec.train.loss` when asked. Everything else (datasets,
prompt-completion masking, padding-free batches, checkpoints, resume, logging) is trl/transformers.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from trl import SFTTrainer

from genrec.train.loss import RestrictedVocab, answer_nll


def _unwrap(model: Any) -> Any:
    """The transformers model under a peft (and/or DDP) wrapper."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class GenRecSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss uses the peft-wrapped output head; ``restrict_ids`` turns on the SID softmax."""

    def __init__(self, *args: Any, restrict_ids: list[int] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.is_fsdp_enabled:
            # The loss multiplies hidden states by the output head outside the model's forward; FSDP keeps
            # only a shard of that weight there. LoRA models of this size fit one device: use DDP.
            raise NotImplementedError("genrec's SFT loss does not support FSDP; use DDP (multi_gpu.yaml)")
        base = _unwrap(self.model)
        vocab = base.get_output_embeddings().weight.shape[0]
        eos = [self.processing_class.eos_token_id] if self.processing_class.eos_token_id is not None else []
        self.restrict = (
            RestrictedVocab(restrict_ids, vocab, closing_ids=[i for i in eos if i in restrict_ids])
            if restrict_ids is not None
            else None
        )
        # the loss reads hidden states, so the model's own logits are cut to one position where it can
        accepts = inspect.signature(base.forward).parameters
        self._keep_one_logit = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        forward = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels")}
        # Through the wrapper, so DDP registers this forward and all-reduces the gradients of backward.
        outputs = model(**forward, use_cache=False, output_hidden_states=True, **self._keep_one_logit)
        hidden = outputs.hidden_states[-1]  # after the final norm: what the LM head reads
        head = _unwrap(model).get_output_embeddings()
        weight = head.weight  # for a TrainableTokensWrapper this is the merged (base + SID delta) weight
        bias = getattr(head, "bias", None)  # peft's token wrapper has none; getattr's default covers it
        total, count = answer_nll(hidden, weight.to(hidden.dtype), labels, self.restrict, bias)
        denom = count if num_items_in_batch is None else num_items_in_batch
        loss = total / torch.as_tensor(denom, device=total.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        if self.model.training:
            if "attention_mask" in inputs:
                tokens = inputs["attention_mask"].sum()
            else:
                tokens = torch.tensor(inputs["input_ids"].numel(), device=labels.device)
            self._total_train_tokens += int(self.accelerator.gather_for_metrics(tokens).sum().item())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return (loss, {"loss": loss}) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # peft would also write the whole resized embedding matrix (vocab x d) into every checkpoint; the SID
        # rows are already in the token adapter, so checkpoints stay adapter-sized.
        model = self.accelerator.unwrap_model(self.model)
        patched = hasattr(model, "peft_config")
        if patched:
            model.save_pretrained = functools.partial(model.save_pretrained, save_embedding_layers=False)
        try:
            super()._save(output_dir, state_dict)
        finally:
            if patched:
                del model.save_pretrained
