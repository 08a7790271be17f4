"""A small Markdown report with PNG figures, written atomically into the demo's output folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec.utils.io import atomic_write


@dataclass
class Report:
    """Sections of Markdown accumulated stage by stage; ``write`` renders them all at once."""

    title: str
    output_dir: Path
    sections: list[tuple[str, str]] = field(default_factory=list)

    def add(self, heading: str, body: str) -> None:
        self.sections.append((heading, body.strip()))

    def image(self, path: Path, alt: str) -> str:
        return f"![{alt}]({Path(path).relative_to(self.output_dir).as_posix()})"

    def write(self, name: str = "report.md") -> Path:
        text = f"# {self.title}\n\n" + "".join(f"## {h}\n\n{b}\n\n" for h, b in self.sections)
        path = self.output_dir / name
        with atomic_write(path) as fh:
            fh.write(text)
        return path


def metrics_table(rows: dict[str, dict[str, Any]], columns: list[str]) -> str:
    """``{model: {metric: value}}`` as a Markdown table with 4-decimal floats."""

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    out = "| model | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n"
    for name, row in rows.items():
        out += f"| {name} | " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |\n"
    return out


def plot_code_usage(codes, codebook_sizes: list[int], path: Path) -> Path:
    """One bar chart per semantic-ID level: how many items use each code value (sorted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    levels = len(codebook_sizes)
    fig, axes = plt.subplots(1, levels, figsize=(3.2 * levels, 2.6), squeeze=False)
    for level, ax in enumerate(axes[0]):
        counts = np.sort(np.bincount(codes[:, level], minlength=codebook_sizes[level]))[::-1]
        used = int((counts > 0).sum())
        ax.bar(np.arange(len(counts)), counts, width=1.0, color="#4477aa")
        ax.set_title(f"level {chr(ord('a') + level)}: {used}/{codebook_sizes[level]} used", fontsize=9)
        ax.set_xlabel("code (sorted by use)", fontsize=8)
        ax.set_ylabel("items", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
    return path
