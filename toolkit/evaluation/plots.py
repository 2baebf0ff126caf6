"""Confusion-matrix picture for classification results (matplotlib, Agg backend: no display needed)."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def confusion_matrix(predictions: Sequence[int], references: Sequence[int], num_labels: int) -> np.ndarray:
    """Counts[i, j] = number of examples with gold label i predicted as j; shape (num_labels, num_labels)."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(references, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def plot_confusion_matrix(
    predictions: Sequence[int],
    references: Sequence[int],
    label_names: Sequence[str],
    path: str | Path,
    title: str | None = None,
    normalize: bool = False,
) -> np.ndarray:
    """Write a confusion-matrix PNG with label names on both axes and the counts in the cells.

    Args:
        predictions: predicted label ids.
        references: gold label ids.
        label_names: name of each id (`id2label` order).
        path: output file (PNG).
        title: optional title; defaults to "Confusion matrix (accuracy X.XX%)".
        normalize: color and annotate each row as fractions of that gold class instead of counts.

    Returns:
        The (num_labels, num_labels) count matrix (rows gold, columns predicted).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_labels = len(label_names)
    counts = confusion_matrix(predictions, references, num_labels)
    values = counts.astype(np.float64)
    if normalize:
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1.0)
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else 0.0

    size = max(4.0, 0.6 * num_labels + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(values, cmap="Blues", vmin=0.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(num_labels), labels=[str(n) for n in label_names], rotation=45, ha="right")
    ax.set_yticks(range(num_labels), labels=[str(n) for n in label_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title or f"Confusion matrix (accuracy {100 * accuracy:.2f}%)")
    threshold = values.max() / 2.0 if values.size else 0.0
    for i in range(num_labels):
        for j in range(num_labels):
            text = f"{values[i, j]:.2f}" if normalize else str(counts[i, j])
            color = "white" if values[i, j] > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return counts
