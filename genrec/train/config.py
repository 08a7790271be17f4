"""Dataclass configs for the LLM SFT stage; a YAML recipe maps onto them section by section.

```yaml
model: {base_model: null, quantization: null}      # null = bundled SmolLM2-135M-Instruct
lora: {r: 8, alpha: 16, target_modules: [q_proj, v_proj]}
data: {dataset: synthetic, tasks: {seqrec: 1.0, item2sid: 0.2}}
sid: {levels: 3, codebook_size: 32}
train: {output_dir: runs/x, max_steps: 200, per_device_train_batch_size: 16}
```

Unknown keys fail with the file and the dotted field named, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genrec.errors import DataFormatError
from genrec.model.adapters import LoraSettings
from genrec.sid.spec import SemanticIDSpec


@dataclass
class ModelArgs:
    """Which base LM to fine-tune. ``base_model``: hub id, local folder, ``.gguf`` file, or null (SmolLM2)."""

    base_model: str | None = None
    gguf_file: str | None = None
    quantization: str | None = None  # "nf4" = QLoRA
    dtype: str = "float32"
    use_lora: bool = True
    sid_init: str = "text"  # new SID rows start from their items' title words; "mean" = vocabulary mean
    num_layers: int | None = None  # keep only the first N layers of the base model (a CPU budget backbone)


@dataclass
class DataArgs:
    """Dataset, optional user subset, and the multi-task mix (template name -> passes per epoch)."""

    dataset: str = "synthetic"
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    max_users: int | None = None  # a random subset of users (seeded) for CPU-budget runs
    user_seed: int = 0
    max_history: int = 20
    prompt_dir: str | None = None
    tasks: dict[str, float] = field(default_factory=lambda: {"seqrec": 1.0})
    recommend_task: str = "seqrec"  # the template generate() uses
    eval_users: int = 200  # validation examples for eval loss; 0 disables eval
    # where explanation templates' targets come from: "grounding" (catalog attributes, verbalized),
    # "reviews" (a sentence of the user's review) or "teacher" (a local LLM, filtered for faithfulness)
    explanation_source: str = "grounding"
    explanation_reviews: str | None = (
        None  # review file for "reviews"; default: the dump the dataset came from
    )
    teacher_max_count: int = 1000  # training pairs the teacher explains; cached in output_dir


@dataclass
class SIDArgs(SemanticIDSpec):
    """Load semantic IDs from ``path``, or build them as the rest of the section says (text by default;
    ``modalities: [text, behaviour]`` adds training co-occurrence; see :class:`genrec.sid.SemanticIDSpec`)."""

    path: str | None = None


@dataclass
class TrainArgs:
    """The ``SFTConfig`` fields recipes set, with CPU-friendly defaults; ``extra`` passes any other."""

    output_dir: str = "runs/sft"
    max_steps: int = -1
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: float = 0.03  # a float in [0, 1) is a fraction of all steps
    lr_scheduler_type: str = "cosine"
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    eval_steps: int | None = None
    seed: int = 0
    bf16: bool = False
    padding_free: bool = True
    sid_restricted_loss: bool = True
    gradient_checkpointing: bool = False
    dataloader_num_workers: int = 0
    report_to: str = "auto"  # "auto" = tensorboard when installed, else nothing
    num_threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SFTRecipe:
    model: ModelArgs = field(default_factory=ModelArgs)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataArgs = field(default_factory=DataArgs)
    sid: SIDArgs = field(default_factory=SIDArgs)
    train: TrainArgs = field(default_factory=TrainArgs)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str | None = None) -> SFTRecipe:
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise DataFormatError(f"unknown recipe section(s) {unknown}; known: {sorted(sections)}", source)
        kwargs = {}
        for f in dataclasses.fields(cls):
            section_cls = type(f.default_factory())  # type: ignore[misc]
            values = raw.get(f.name) or {}
            if not isinstance(values, dict):
                raise DataFormatError(f"section {f.name!r} must be a mapping", source)
            known = {g.name for g in dataclasses.fields(section_cls)}
            bad = sorted(set(values) - known)
            if bad:
                raise DataFormatError(
                    f"unknown field(s) {[f'{f.name}.{b}' for b in bad]}; known: {sorted(known)}", source
                )
            kwargs[f.name] = section_cls(**values)
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SFTRecipe:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise DataFormatError(f"not valid YAML: {e}", path) from e
        if not isinstance(raw, dict):
            raise DataFormatError("a recipe must be a YAML mapping", path)
        return cls.from_dict(raw, str(path))

    def override(self, dotted: str, value: Any) -> None:
        """Set ``section.field`` (e.g. ``train.max_steps``); a value given as text is parsed as YAML."""
        section, _, name = dotted.partition(".")
        target = getattr(self, section, None)
        if (
            target is None
            or not dataclasses.is_dataclass(target)
            or name not in {f.name for f in dataclasses.fields(target)}
        ):
            raise ValueError(f"unknown recipe field {dotted!r}")
        setattr(target, name, yaml.safe_load(value) if isinstance(value, str) else value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
