"""Offline evaluation: `evaluate` metric modules shipped with the toolkit, task metric sets and plots."""

from .loading import ALIASES, LOCAL_METRICS, load_metric, local_metric_path
from .plots import confusion_matrix, plot_confusion_matrix
from .scores import (
    TASK_METRICS,
    classification_scores,
    summarization_scores,
    task_scores,
    translation_scores,
)

__all__ = [
    "ALIASES",
    "LOCAL_METRICS",
    "TASK_METRICS",
    "classification_scores",
    "confusion_matrix",
    "load_metric",
    "local_metric_path",
    "plot_confusion_matrix",
    "summarization_scores",
    "task_scores",
    "translation_scores",
]
