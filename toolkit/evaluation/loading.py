"""Load evaluation metrics offline: the metrics the toolkit needs ship inside it as `evaluate` modules.

`evaluate.load("accuracy")` downloads the metric script from the Hugging Face Hub and fails without a network. The
toolkit ships its own module files under `toolkit/evaluation/metrics/<name>/<name>.py` and loads them by path
(`evaluate.load(<file>)`), which never touches the network. Any other name is passed to `evaluate.load(name)`.
"""

from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).resolve().parent / "metrics"

# Name -> module file shipped with the toolkit. Keys are the Hub's metric names, so code written for the Hub works.
LOCAL_METRICS = {
    name: METRICS_DIR / name / f"{name}.py"
    for name in ("accuracy", "f1", "matthews_correlation", "sacrebleu", "chrf", "rouge")
}

# Friendly aliases accepted by `load_metric` (and by `--metric` flags).
ALIASES = {
    "acc": "accuracy",
    "macro_f1": "f1",
    "mcc": "matthews_correlation",
    "bleu": "sacrebleu",
    "chrF": "chrf",
    "rougeL": "rouge",
}


def local_metric_path(name: str) -> Path | None:
    """The module file the toolkit ships for `name` (or an alias of it), or None."""
    path = LOCAL_METRICS.get(ALIASES.get(name, name))
    return path if path is not None and path.is_file() else None


def load_metric(name: str, **kwargs) -> evaluate.EvaluationModule:
    """Load metric `name`: the toolkit's offline copy if it ships one, else `evaluate.load(name)` from the Hub.

    Args:
        name: a metric name ("accuracy", "f1", "matthews_correlation", "sacrebleu", "chrf", "rouge", an alias
            from `ALIASES`, any Hub metric name, or a path to a metric script).
        **kwargs: passed to `evaluate.load` (e.g. `experiment_id`, `num_process`, `process_id`).

    Raises:
        RuntimeError: one line naming the metric and the reason when neither source has it.
    """
    path = local_metric_path(name)
    if path is not None:
        return evaluate.load(str(path), **kwargs)
    try:
        return evaluate.load(name, **kwargs)
    except Exception as error:  # evaluate raises FileNotFoundError, ConnectionError, OSError, ... depending on why
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(
            f"Metric '{name}' is not shipped with the toolkit (offline: {', '.join(sorted(LOCAL_METRICS))}) and "
            f"could not be loaded with evaluate.load (needs the Hugging Face Hub): {reason}"
        ) from None
