"""The lecture's claims, measured in one command: pretrain, fine-tune, compare with training from scratch.

Stages (`--stages`, comma-separated; each run inside a stage is skipped when its results already exist, so a rerun
after an interruption continues where it stopped, and a run that was cut mid-training resumes from its checkpoint):

1. `pretrain`: a BERT (masked LM, `recipes/pretrain_bert.py`) and an ELMo biLM (`recipes/pretrain_elmo.py`) on the
   configured corpus; with `task_adaptive_pretraining` the classification task's own training text (labels dropped)
   is added to the corpus (Gururangan et al., 2020).
2. `classification`: each backbone (`scratch` BiLSTM, the ELMo and BERT pretrained in stage 1, plus any Hugging Face
   BERT folder in `extra_backbones`) fine-tuned on random subsets of the labelled training data (`label_budgets`,
   several `seeds` for the small budgets), validation accuracy as mean and std over seeds.
3. `translation`: the RNN encoder-decoder without attention (one fixed vector for the whole source sentence),
   with dot, bilinear and additive attention, and the Transformer; BLEU overall and by source length, training
   tokens/s, attention maps; whether the attention gap grows with source length is a slope over every test sentence
   with a bootstrap interval (`translation_length_trend`), since the longest bucket holds a few dozen sentences.
4. `summarization`: a Transformer from scratch against one whose encoder starts from a BERT checkpoint.

Outputs in `--output_dir`: `REPORT.md` (tables, and each claim with the numbers that support or contradict it),
`report.json` (every number), PNGs (accuracy vs labels, pretraining curves, BLEU vs source length, attention maps),
and `runs/<stage>/<run>/` with each run's own outputs and `log.txt`.

Presets (`recipes/configs/report/`): `smoke` (minutes, used by a test), `cpu` (about 90 minutes on 2 CPU cores),
`gpu` (about 12 minutes on one H100/H200). They name Hub datasets or the embedded demo data; point the report at
local copies with flags:

    python recipes/lecture_report.py --config recipes/configs/report/cpu.yaml
    make report                                    # the same
    # offline, with local copies of the data (here: ../shared/data)
    python recipes/lecture_report.py --config recipes/configs/report/cpu.yaml \\
        --pretrain_train_file ../shared/data/pretrain_corpus/gutenberg \\
        --pretrain_validation_file ../shared/data/pretrain_corpus/wikitext2_raw_test \\
        --classification_train_file ../shared/data/sst2/train.tsv \\
        --classification_validation_file ../shared/data/sst2/dev.tsv \\
        --translation_train_file ../shared/data/multi30k_en_de/train \\
        --translation_validation_file ../shared/data/multi30k_en_de/val \\
        --translation_test_file ../shared/data/multi30k_en_de/test_2016_flickr
"""

from __future__ import annotations

import json
import math
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from toolkit import config as toolkit_config
from toolkit.errors import UserError, exit_on_user_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = {"bert": "BERT", "elmo": "ELMo"}
STAGES = ("pretrain", "classification", "translation", "summarization")
TRANSLATION_MODELS = {  # name -> (model family, flags on top of that family's config)
    "rnn_none": ("rnn", ["--attention_type", "none"]),
    "rnn_dot": ("rnn", ["--attention_type", "dot"]),
    "rnn_bilinear": ("rnn", ["--attention_type", "bilinear"]),
    "rnn_additive": ("rnn", ["--attention_type", "additive"]),
    "transformer": ("transformer", []),
}


@dataclass
class ReportArguments:
    output_dir: str = field(default="outputs/lecture_report", metadata={"help": "Where the report and runs go."})
    stages: str = field(default="pretrain,classification,translation", metadata={"help": f"Any of {STAGES}."})
    accelerate_config: str = field(
        default="accelerate_configs/cpu.yaml", metadata={"help": "accelerate config every run is launched with."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the pretraining and translation runs."})
    # --- pretraining ---
    pretrain_dataset_name: str | None = field(default="demo", metadata={"help": "Corpus: Hub dataset or 'demo'."})
    pretrain_dataset_config_name: str | None = field(default="corpus", metadata={"help": "Its configuration."})
    pretrain_train_file: str | None = field(default=None, metadata={"help": "Corpus: local file or folder."})
    pretrain_validation_file: str | None = field(default=None, metadata={"help": "Held-out text (file/folder)."})
    pretrain_text_column: str = field(default="text", metadata={"help": "Text column of the corpus."})
    pretrain_validation_text_column: str | None = field(
        default=None, metadata={"help": "Text column of the held-out text when it differs (default: the corpus')."}
    )
    bert_config: str = field(default="recipes/configs/bert/quickstart.yaml", metadata={"help": "BERT YAML."})
    elmo_config: str = field(default="recipes/configs/elmo/quickstart.yaml", metadata={"help": "ELMo YAML."})
    pretrain_max_time_minutes: float | None = field(
        default=None, metadata={"help": "Wall-clock budget of each pretraining run (default: the config's)."}
    )
    task_adaptive_pretraining: bool = field(
        default=True, metadata={"help": "Add the classification training text (no labels) to the corpus."}
    )
    bert_flags: str = field(default="", metadata={"help": "Extra pretrain_bert.py flags, e.g. '--max_steps 50'."})
    elmo_flags: str = field(default="", metadata={"help": "Extra pretrain_elmo.py flags."})
    # --- classification ---
    classification_dataset_name: str | None = field(default="glue", metadata={"help": "Hub dataset or 'demo'."})
    classification_dataset_config_name: str | None = field(default="sst2", metadata={"help": "Its configuration."})
    classification_train_file: str | None = field(default=None, metadata={"help": "Local labelled training file."})
    classification_validation_file: str | None = field(default=None, metadata={"help": "Local validation file."})
    text_column: str = field(default="sentence", metadata={"help": "Classification text column."})
    label_column: str = field(default="label", metadata={"help": "Classification label column."})
    label_budgets: list[int] = field(
        default_factory=lambda: [500, 2000, 8000], metadata={"help": "Training-set sizes (0: all labelled data)."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds for small budgets."})
    max_seeded_budget: int = field(
        default=2000, metadata={"help": "Budgets above this run with the first seed only (0 counts as above)."}
    )
    backbones: list[str] = field(
        default_factory=lambda: ["scratch", "elmo", "bert"], metadata={"help": "scratch, elmo, bert."}
    )
    extra_backbones: list[str] = field(
        default_factory=list, metadata={"help": "Hugging Face BERT folders to compare too (e.g. converted MiniLM)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap the validation set (speed)."})
    classification_flags: str = field(default="", metadata={"help": "Extra finetune_classification.py flags."})
    elmo_word_embeddings: bool = field(
        default=True,
        metadata={
            "help": "ELMo classifiers also get a trainable word embedding beside the ELMo vector (Peters et al., "
            "2018), so a frozen biLM does not hide word identity from the task model."
        },
    )
    # --- translation ---
    translation_dataset_name: str | None = field(default="bentrevett/multi30k", metadata={"help": "Hub dataset."})
    translation_train_file: str | None = field(default=None, metadata={"help": "Parallel-text prefix (train)."})
    translation_validation_file: str | None = field(default=None, metadata={"help": "Prefix (validation)."})
    translation_test_file: str | None = field(default=None, metadata={"help": "Prefix (test)."})
    source_lang: str = field(default="de", metadata={"help": "Source language / column."})
    target_lang: str = field(default="en", metadata={"help": "Target language / column."})
    translation_models: list[str] = field(
        default_factory=lambda: list(TRANSLATION_MODELS), metadata={"help": f"Any of {list(TRANSLATION_MODELS)}."}
    )
    rnn_config: str = field(
        default="recipes/configs/translation/multi30k_rnn_additive.yaml", metadata={"help": "RNN YAML (base)."}
    )
    transformer_config: str = field(
        default="recipes/configs/translation/multi30k_transformer_small.yaml", metadata={"help": "Transformer YAML."}
    )
    translation_flags: str = field(default="", metadata={"help": "Extra finetune_seq2seq.py flags (all models)."})
    rnn_flags: str = field(default="", metadata={"help": "Extra finetune_seq2seq.py flags for the RNN models."})
    transformer_flags: str = field(default="", metadata={"help": "Extra finetune_seq2seq.py flags, Transformer."})
    length_buckets: list[int] = field(
        default_factory=lambda: [10, 15, 20], metadata={"help": "Upper bounds (source words) of BLEU buckets."}
    )
    # --- summarization ---
    summarization_dataset_name: str | None = field(default="knkarthick/dialogsum", metadata={"help": "Hub."})
    summarization_train_file: str | None = field(default=None, metadata={"help": "Local jsonl (train)."})
    summarization_validation_file: str | None = field(default=None, metadata={"help": "Local jsonl (validation)."})
    summarization_test_file: str | None = field(default=None, metadata={"help": "Local jsonl (test)."})
    document_column: str = field(default="dialogue", metadata={"help": "Summarization source column."})
    summary_column: str = field(default="summary", metadata={"help": "Summarization target column."})
    summarization_config: str = field(
        default="recipes/configs/summarization/dialogsum_transformer_small.yaml", metadata={"help": "Base YAML."}
    )
    summarization_encoder: str = field(
        default="bert", metadata={"help": "Warm-start encoder: 'bert' (stage 1's) or a BERT folder."}
    )
    summarization_flags: str = field(default="", metadata={"help": "Extra finetune_seq2seq.py flags."})
    parallel_runs: int = field(
        default=1,
        metadata={
            "help": "Runs of a stage that train side by side, each with (CPU cores / parallel_runs) threads: on a "
            "CPU, small models gain little from a second thread, so two runs at once get more done; 1 on a GPU."
        },
    )

    def __post_init__(self):
        stages = [s for s in self.stages.split(",") if s]
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ValueError(f"stages: unknown stage(s) {unknown}; expected some of {', '.join(STAGES)}")
        bad = [m for m in self.translation_models if m not in TRANSLATION_MODELS]
        if bad:
            raise ValueError(f"translation_models: unknown {bad}; expected some of {', '.join(TRANSLATION_MODELS)}")
        bad = [b for b in self.backbones if b not in ("scratch", "elmo", "bert")]
        if bad:
            raise ValueError(f"backbones: unknown {bad}; expected some of scratch, elmo, bert")
        if any(b < 0 for b in self.label_budgets):
            raise ValueError("label_budgets: sizes must be >= 0 (0 means all labelled data)")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        if self.parallel_runs < 1:
            raise ValueError(f"parallel_runs: expected 1 or more, got {self.parallel_runs}")

    @property
    def stage_list(self) -> list[str]:
        return [s for s in self.stages.split(",") if s]


def parse_args(argv: list[str] | None = None) -> tuple[ReportArguments]:
    return toolkit_config.parse_args(ReportArguments, args=argv, description=__doc__)


# --- running one recipe ----------------------------------------------------------------------------------------------


def threads_per_run(args: ReportArguments, runs: int) -> int:
    """CPU threads each of `runs` runs side by side gets (at most `parallel_runs` share the machine)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // min(args.parallel_runs, runs))


def run_recipes(args: ReportArguments, stage: str, jobs: list[tuple[str, str, list[str]]]) -> list[dict]:
    """`run_recipe` for each (name, recipe, flags), `parallel_runs` at a time (then each with `threads_per_run`
    threads); results in the order of `jobs`. When a run fails, the ones started finish, no new one starts, and the
    first failure is raised (a rerun continues from what finished)."""
    if args.parallel_runs == 1 or len(jobs) == 1:
        return [run_recipe(args, stage, name, recipe, flags) for name, recipe, flags in jobs]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_run(args, len(jobs)))}
    failed = threading.Event()

    def one(name, recipe, flags):
        if failed.is_set():
            return None  # a run failed: start no more
        try:
            return run_recipe(args, stage, name, recipe, flags, env)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=args.parallel_runs) as pool:
        futures = [pool.submit(one, *job) for job in jobs]
    for future in futures:
        if future.exception() is not None:
            raise future.exception()
    return [future.result() for future in futures]


def run_recipe(args: ReportArguments, stage: str, name: str, recipe: str, flags: list[str], env=None) -> dict:
    """Run `recipes/<recipe>.py` under `accelerate launch` into `runs/<stage>/<name>` unless it already finished
    (its `all_results.json` exists). A run cut short resumes from its latest checkpoint. Returns its results."""
    run_dir = os.path.join(args.output_dir, "runs", stage, name)
    results_path = os.path.join(run_dir, "all_results.json")
    if os.path.isfile(results_path):
        print(f"[{stage}] {name}: done before, skipped")
        return read_json(results_path)
    resume = []
    if os.path.isdir(os.path.join(run_dir, "checkpoints")) and any(
        d.startswith("step-") and not d.endswith(".tmp") for d in os.listdir(os.path.join(run_dir, "checkpoints"))
    ):
        resume = ["--resume_from_checkpoint", "latest"]
    elif os.path.isdir(run_dir):
        shutil.rmtree(run_dir)  # started but never checkpointed: nothing to keep
    os.makedirs(run_dir, exist_ok=True)
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", args.accelerate_config,
        os.path.join(REPO, "recipes", f"{recipe}.py"), *flags, "--output_dir", run_dir, *resume,
    ]  # fmt: skip
    # side by side (env given), other runs print meanwhile: whole lines only, the run's name on each
    begin = f"[{stage}] {name}: running{' (resuming)' if resume else ''} ..."
    if env is None:
        print(begin + " ", end="", flush=True)
    else:
        print(f"{begin} ({env['OMP_NUM_THREADS']} thread(s))", flush=True)
    prefix = "" if env is None else f"[{stage}] {name}: "
    start = time.perf_counter()
    with open(os.path.join(run_dir, "log.txt"), "a", encoding="utf-8") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    seconds = time.perf_counter() - start
    if code != 0 or not os.path.isfile(results_path):
        print(prefix + "failed", flush=True)
        tail = open(os.path.join(run_dir, "log.txt"), encoding="utf-8", errors="replace").read().splitlines()[-15:]
        print("\n".join(tail), file=sys.stderr)
        raise RunFailed(f"{stage} run '{name}' failed (exit {code}); full log: {run_dir}/log.txt")
    results = read_json(results_path)
    print(f"{prefix}{seconds:.0f} s", flush=True)
    return results


class RunFailed(Exception):
    """A launched recipe exited non-zero: the report stops (rerun to continue from what finished)."""


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def data_flags(prefix: str, dataset_name, dataset_config_name, train_file, validation_file, test_file=None):
    """Data flags of a recipe: local files when given, else the named (Hub or demo) dataset."""
    if train_file:
        flags = ["--train_file", train_file]
        flags += ["--validation_file", validation_file] if validation_file else []
        flags += ["--test_file", test_file] if test_file else []
        return flags
    if not dataset_name:
        raise UserError(f"{prefix}: give {prefix}_dataset_name or {prefix}_train_file")
    return ["--dataset_name", dataset_name] + (
        ["--dataset_config_name", dataset_config_name] if dataset_config_name else []
    )


def corpus_name(args: ReportArguments) -> str:
    return args.pretrain_train_file or f"{args.pretrain_dataset_name}/{args.pretrain_dataset_config_name}"


def pretrain_paths(args: ReportArguments) -> dict[str, str]:
    return {kind: os.path.join(args.output_dir, "runs", "pretrain", kind) for kind in ("bert", "elmo")}


# --- stage 0: the classification data, written once as local files ----------------------------------------------------


def prepare_classification_data(args: ReportArguments) -> dict:
    """Write validation.jsonl and one train_<budget>_seed<seed>.jsonl per run (a seeded random subset), plus the
    unlabelled training text for task-adaptive pretraining. Written once; later runs read the files."""
    data_dir = os.path.join(args.output_dir, "data")
    manifest_path = os.path.join(data_dir, "classification.json")
    if os.path.isfile(manifest_path):
        return read_json(manifest_path)
    from toolkit.data import DataArguments, load_raw_datasets

    data_args = DataArguments(
        dataset_name=None if args.classification_train_file else args.classification_dataset_name,
        dataset_config_name=None if args.classification_train_file else args.classification_dataset_config_name,
        train_file=args.classification_train_file,
        validation_file=args.classification_validation_file,
        text_column=args.text_column,
    )
    splits = load_raw_datasets(data_args, need_validation=True, seed=args.seed)
    for split in ("train", "validation"):
        missing = [c for c in (args.text_column, args.label_column) if c not in splits[split].column_names]
        if missing:
            raise UserError(
                f"classification {split} data has no column(s) {missing} (columns: {splits[split].column_names});"
                " set text_column / label_column"
            )
    os.makedirs(data_dir, exist_ok=True)
    train = splits["train"].select_columns([args.text_column, args.label_column])
    validation = splits["validation"].select_columns([args.text_column, args.label_column])
    if args.max_eval_samples:
        validation = validation.select(range(min(args.max_eval_samples, len(validation))))
    validation.to_json(os.path.join(data_dir, "validation.jsonl"))
    with open(os.path.join(data_dir, "task_text.jsonl"), "w", encoding="utf-8") as f:
        for text in train[args.text_column]:  # the task's training text, labels dropped
            f.write(json.dumps({"text": text}) + "\n")
    runs = []
    for budget in args.label_budgets:
        size = len(train) if budget == 0 or budget >= len(train) else budget
        seeds = args.seeds if 0 < budget <= args.max_seeded_budget else args.seeds[:1]
        for seed in seeds:
            path = os.path.join(data_dir, f"train_{size}_seed{seed}.jsonl")
            indices = list(range(len(train)))
            random.Random(seed).shuffle(indices)
            train.select(sorted(indices[:size])).to_json(path)
            runs.append({"labels": size, "seed": seed, "train_file": path})
    manifest = {
        "train_size": len(train),
        "validation_size": len(validation),
        "validation_file": os.path.join(data_dir, "validation.jsonl"),
        "task_text_file": os.path.join(data_dir, "task_text.jsonl"),
        "runs": runs,
    }
    write_json(manifest_path, manifest)
    return manifest


# --- stage 1: pretraining ----------------------------------------------------------------------------------------------


def stage_pretrain(args: ReportArguments, cls_data: dict | None) -> dict:
    out = {}
    corpus = data_flags(
        "pretrain", args.pretrain_dataset_name, args.pretrain_dataset_config_name,
        args.pretrain_train_file, args.pretrain_validation_file,
    )  # fmt: skip
    if args.pretrain_train_file or args.pretrain_dataset_name != "demo":
        corpus += ["--text_column", args.pretrain_text_column]
    if args.pretrain_validation_text_column and args.pretrain_validation_file:
        corpus += ["--validation_text_column", args.pretrain_validation_text_column]
    if args.task_adaptive_pretraining and cls_data:
        corpus += ["--extra_text_file", cls_data["task_text_file"], "--extra_text_column", "text"]
    budget = ["--max_time_minutes", str(args.pretrain_max_time_minutes)] if args.pretrain_max_time_minutes else []
    jobs, configs = [], {}
    for kind, config, extra in (
        ("bert", args.bert_config, args.bert_flags),
        ("elmo", args.elmo_config, args.elmo_flags),
    ):
        if kind not in args.backbones and not (kind == "bert" and "summarization" in args.stage_list):
            continue
        flags = ["--config", config, *corpus, "--seed", str(args.seed), *budget, *shlex.split(extra)]
        jobs.append((kind, f"pretrain_{kind}", flags))
        configs[kind] = config
    for (kind, _, _), results in zip(jobs, run_recipes(args, "pretrain", jobs)):
        history = read_json(os.path.join(pretrain_paths(args)[kind], "log_history.json"))
        out[kind] = {
            "config": configs[kind],
            "corpus": corpus_name(args),  # recorded: a later `--stages classification` run may not repeat the flags
            "task_adaptive": bool(args.task_adaptive_pretraining and cls_data),
            "results": results,
            "curve": [e for e in history if any(k.startswith("eval_") for k in e)],
        }
    return out


# --- stage 2: classification --------------------------------------------------------------------------------------------


def stage_classification(args: ReportArguments, cls_data: dict) -> list[dict]:
    backbones = {b: b if b == "scratch" else pretrain_paths(args)[b] for b in args.backbones}
    backbones.update({os.path.basename(os.path.normpath(p)): p for p in args.extra_backbones})
    jobs, keys = [], []
    for run in cls_data["runs"]:
        for name, path in backbones.items():
            flags = [
                "--model_name_or_path", path, "--train_file", run["train_file"],
                "--validation_file", cls_data["validation_file"], "--text_column", args.text_column,
                "--label_column", args.label_column, "--seed", str(run["seed"]), "--save_steps", "0",
                *shlex.split(args.classification_flags),
            ]  # fmt: skip
            if name == "elmo" and args.elmo_word_embeddings:
                flags += ["--elmo_word_embeddings", "true"]
            jobs.append((f"{name}_labels{run['labels']}_seed{run['seed']}", "finetune_classification", flags))
            keys.append((name, run))
    # the largest label budgets start first, so that side by side (parallel_runs) no long run is left alone at the end
    order = sorted(range(len(jobs)), key=lambda i: -keys[i][1]["labels"])
    results = dict(zip(order, run_recipes(args, "classification", [jobs[i] for i in order])))
    return [
        {
            "backbone": name,
            "labels": run["labels"],
            "seed": run["seed"],
            "accuracy": round(100 * results[i]["validation_accuracy"], 2),
            "macro_f1": round(100 * results[i].get("validation_macro_f1", float("nan")), 2),
            "train_seconds": results[i].get("train_runtime", results[i].get("train_runtime_seconds")),
        }
        for i, (name, run) in enumerate(keys)
    ]


def _mean_std(summary_row: dict) -> str:
    """`mean±std`, or `mean (1 seed)` where one seed gives no spread (not a spread of 0)."""
    if summary_row["seeds"] < 2:
        return f"{summary_row['mean']:.1f} (1 seed)"
    return f"{summary_row['mean']:.1f}±{summary_row['std']:.1f}"


def summarize_classification(rows: list[dict]) -> list[dict]:
    """Mean and std of accuracy per (backbone, labels)."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault((row["backbone"], row["labels"]), []).append(row["accuracy"])
    return [
        {
            "backbone": backbone,
            "labels": labels,
            "seeds": len(values),
            "mean": round(statistics.fmean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
        }
        for (backbone, labels), values in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


# --- stage 3: translation ---------------------------------------------------------------------------------------------


def stage_translation(args: ReportArguments) -> list[dict]:
    data = data_flags(
        "translation", args.translation_dataset_name, None, args.translation_train_file,
        args.translation_validation_file, args.translation_test_file,
    )  # fmt: skip
    data += ["--source_lang", args.source_lang, "--target_lang", args.target_lang]
    jobs = []
    for name in args.translation_models:
        family, model_flags = TRANSLATION_MODELS[name]
        config = args.rnn_config if family == "rnn" else args.transformer_config
        family_flags = args.rnn_flags if family == "rnn" else args.transformer_flags
        flags = ["--config", config, *data, *model_flags, "--seed", str(args.seed)]
        jobs.append(
            (name, "finetune_seq2seq", flags + shlex.split(args.translation_flags) + shlex.split(family_flags))
        )
    rows = []
    for name, results in zip(args.translation_models, run_recipes(args, "translation", jobs)):
        family, model_flags = TRANSLATION_MODELS[name]
        run_dir = os.path.join(args.output_dir, "runs", "translation", name)
        history = (
            read_json(os.path.join(run_dir, "log_history.json"))
            if os.path.isfile(os.path.join(run_dir, "log_history.json"))
            else []
        )
        speeds = [e["tokens_per_second"] for e in history if "tokens_per_second" in e]
        speed = statistics.median(speeds) if speeds else logged_throughput(run_dir)
        rows.append(
            {
                "model": family,
                "attention": model_flags[1] if family == "rnn" else "multi-head",
                "name": name,
                "bleu": results.get("test_bleu", results.get("validation_bleu")),
                "chrf": results.get("test_chrf", results.get("validation_chrf")),
                "split": "test" if "test_bleu" in results else "validation",
                "tokens_per_second": round(speed, 1) if speed else None,
                "parameters": results.get("parameters"),
                "steps": results.get("global_step"),
                "bleu_by_length": bleu_by_length(run_dir, args.length_buckets),
            }
        )
    return rows


def logged_throughput(run_dir: str) -> float | None:
    """Training tokens/s from the run's closing `throughput: N tokens/s ...` line (every recipe prints one)."""
    speed = None
    with open(os.path.join(run_dir, "log.txt"), encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("throughput:"):
                speed = float(line.split()[1].replace(",", ""))
    return speed


def bleu_by_length(run_dir: str, bounds: list[int]) -> list[dict]:
    """sacreBLEU of the test (else validation) predictions grouped by source length in words."""
    from toolkit.evaluation.scores import translation_scores

    for split in ("test", "validation"):
        path = os.path.join(run_dir, f"{split}_predictions.jsonl")
        if os.path.isfile(path):
            break
    else:
        return []
    with open(path, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    edges = [0, *sorted(bounds), math.inf]
    buckets = []
    for low, high in zip(edges[:-1], edges[1:]):
        group = [it for it in items if low < len(it["source"].split()) <= high]
        if not group:
            continue
        label = f"{low + 1}-{high}" if high != math.inf else f">{low}"
        bleu = translation_scores([g["prediction"] for g in group], [g["reference"] for g in group])["bleu"]
        buckets.append({"source_words": label, "sentences": len(group), "bleu": round(bleu, 2)})
    return buckets


def length_trend(args: ReportArguments, rows: list[dict], resamples: int = 1000) -> dict | None:
    """Does the attention RNNs' lead over the no-attention RNN grow with source length? Per test sentence: the mean
    sentence chrF of the attention RNNs minus that of the no-attention RNN; the least-squares slope of that gap
    against the source length in words, with a 95% bootstrap interval over the sentences (seeded). Every sentence
    counts, where a bucket of the longest sentences may hold a few dozen. None without both kinds of predictions."""
    from sacrebleu.metrics import CHRF

    def sentence_chrf(name: str) -> list[tuple[int, float]] | None:
        row = next((r for r in rows if r["name"] == name), None)
        path = (
            os.path.join(args.output_dir, "runs", "translation", name, f"{row['split']}_predictions.jsonl")
            if row
            else ""
        )
        if not os.path.isfile(path):
            return None
        chrf = CHRF()
        with open(path, encoding="utf-8") as f:
            items = [json.loads(line) for line in f if line.strip()]
        return [
            (len(it["source"].split()), chrf.sentence_score(it["prediction"], [it["reference"]]).score) for it in items
        ]

    attention = [r["name"] for r in rows if r["model"] == "rnn" and r["attention"] != "none"]
    none = sentence_chrf("rnn_none")
    scored = {name: sentence_chrf(name) for name in attention}
    scored = {name: s for name, s in scored.items() if s is not None and none and len(s) == len(none)}
    if not none or not scored:
        return None
    lengths = [n for n, _ in none]
    gaps = [statistics.fmean(s[i][1] for s in scored.values()) - none[i][1] for i in range(len(none))]

    def slope(idx) -> float:
        xs, ys = [lengths[i] for i in idx], [gaps[i] for i in idx]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        var = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0

    rng = random.Random(args.seed)
    n = len(gaps)
    boot = sorted(slope([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    return {
        "metric": "sentence chrF, mean attention RNN minus no attention",
        "models": list(scored),
        "sentences": n,
        "mean_gap": round(statistics.fmean(gaps), 2),
        "slope_per_word": round(slope(range(n)), 3),
        "ci95": [round(boot[int(0.025 * resamples)], 3), round(boot[int(0.975 * resamples) - 1], 3)],
        "resamples": resamples,
    }


def attention_maps(args: ReportArguments, rows: list[dict], pair: tuple[str, str] | None) -> list[str]:
    """One cross-attention picture per attention model (`toolkit visualize-attention`) for the first test pair,
    drawn over the reference translation (so the maps of all models share their rows)."""
    if not pair:
        return []
    source, reference = pair
    written = []
    for row in rows:
        if row["attention"] == "none":
            continue
        out = os.path.join(args.output_dir, f"attention_{row['name']}.png")
        if not os.path.isfile(out):
            cmd = [sys.executable, "-m", "toolkit", "visualize-attention", "--model",
                   os.path.join(args.output_dir, "runs", "translation", row["name"]), "--source", source,
                   "--target", reference, "--out", out]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if proc.returncode != 0 and "--trust_remote_code" in proc.stderr:  # CLIs that ask for the opt-in
                proc = subprocess.run(cmd + ["--trust_remote_code"], capture_output=True, text=True, cwd=REPO)
            if proc.returncode != 0:
                print(f"[translation] attention map for {row['name']} not drawn: {proc.stderr.strip()[-300:]}")
                continue
        written.append(os.path.basename(out))
    return written


def first_test_pair(args: ReportArguments) -> tuple[str, str] | None:
    for row_name in args.translation_models:
        for split in ("test", "validation"):
            path = os.path.join(args.output_dir, "runs", "translation", row_name, f"{split}_predictions.jsonl")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    first = json.loads(f.readline())
                return first["source"], first["reference"]
    return None


# --- stage 4: summarization -------------------------------------------------------------------------------------------


def stage_summarization(args: ReportArguments) -> list[dict]:
    data = data_flags(
        "summarization", args.summarization_dataset_name, None, args.summarization_train_file,
        args.summarization_validation_file, args.summarization_test_file,
    )  # fmt: skip
    data += ["--text_column", args.document_column, "--summary_column", args.summary_column]
    encoder = pretrain_paths(args)["bert"] if args.summarization_encoder == "bert" else args.summarization_encoder
    models = (("scratch", []), ("bert_encoder", ["--init_encoder_from", encoder]))
    seed, extra_flags = ["--seed", str(args.seed)], shlex.split(args.summarization_flags)
    jobs = [
        (name, "finetune_seq2seq", ["--config", args.summarization_config, *data, *extra, *seed, *extra_flags])
        for name, extra in models
    ]
    rows = []
    for (name, extra), results in zip(models, run_recipes(args, "summarization", jobs)):
        split = "test" if "test_rouge1" in results else "validation"
        rows.append(
            {
                "model": name,
                "encoder": encoder if extra else None,
                "split": split,
                **{m: results.get(f"{split}_{m}") for m in ("rouge1", "rouge2", "rougeL")},
                "steps": results.get("global_step"),
            }
        )
    return rows


# --- the report ----------------------------------------------------------------------------------------------------------


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, legend_ax=None) -> None:
    """Grid (and legend) on, tight layout, PNG at 120 dpi, figure closed."""
    for ax in fig.axes:
        ax.grid(alpha=0.3)
    if legend_ax is not None:
        legend_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)


def plot_learning_curves(summary: list[dict], path: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for backbone in dict.fromkeys(r["backbone"] for r in summary):
        points = [r for r in summary if r["backbone"] == backbone]
        ax.errorbar(
            [p["labels"] for p in points], [p["mean"] for p in points], yerr=[p["std"] for p in points],
            marker="o", capsize=3, label=backbone,
        )  # fmt: skip
    budgets = sorted({r["labels"] for r in summary})
    ax.set_xscale("log")
    ax.set_xticks(budgets, labels=[f"{b:,}" for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("labelled training examples (log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Fine-tuning a pretrained backbone vs training from scratch")
    save_figure(fig, path, ax)


def plot_pretraining(pretrain: dict, path: str) -> None:
    plt = pyplot()
    panels = [(k, v["curve"]) for k, v in pretrain.items() if v.get("curve")]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (kind, curve) in zip(axes[0], panels):
        steps = [e["step"] for e in curve]
        if kind == "bert" and "eval_rtd_accuracy" in curve[-1]:  # ELECTRA: both parts of the objective
            ax.plot(steps, [100 * e.get("eval_rtd_accuracy", float("nan")) for e in curve], marker="o",
                    label="encoder: replaced-token accuracy")  # fmt: skip
            ax.plot(steps, [100 * e.get("eval_rtd_recall", float("nan")) for e in curve], marker="^", linestyle="--",
                    label="encoder: replaced tokens caught (recall)")  # fmt: skip
            ax.plot(steps, [100 * e.get("eval_accuracy", float("nan")) for e in curve], marker="s",
                    label="generator: masked-token accuracy")  # fmt: skip
            ax.set_ylabel("held-out accuracy (%)")
            ax.legend(fontsize=8)
        elif kind == "bert":
            ax.plot(steps, [100 * e.get("eval_accuracy", float("nan")) for e in curve], marker="o")
            ax.set_ylabel("held-out masked-token accuracy (%)")
        else:
            ax.plot(steps, [e.get("eval_perplexity", float("nan")) for e in curve], marker="o")
            ax.set_yscale("log")
            ax.set_ylabel("held-out perplexity (fwd/bwd mean)")
        ax.set_xlabel("optimizer step")
        electra = " (ELECTRA)" if "eval_rtd_accuracy" in curve[-1] else ""
        ax.set_title(f"{NAMES[kind]}{electra} pretraining")
    save_figure(fig, path)


def plot_bleu_by_length(rows: list[dict], path: str) -> None:
    plt = pyplot()
    if not any(r["bleu_by_length"] for r in rows):
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for row in rows:
        buckets = row["bleu_by_length"]
        ax.plot([b["source_words"] for b in buckets], [b["bleu"] for b in buckets], marker="o", label=row["name"])
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel("BLEU")
    ax.set_title("Translation quality by source length")
    save_figure(fig, path, ax)


def classification_claims(summary: list[dict]) -> list[str]:
    """Each pretrained backbone against scratch, per label budget, as sentences with their numbers."""
    scratch = {r["labels"]: r for r in summary if r["backbone"] == "scratch"}
    lines = []
    for backbone in dict.fromkeys(r["backbone"] for r in summary if r["backbone"] != "scratch"):
        deltas = []
        for r in (r for r in summary if r["backbone"] == backbone and r["labels"] in scratch):
            base = scratch[r["labels"]]
            deltas.append((r["labels"], round(r["mean"] - base["mean"], 2), r, base))
        if not deltas:
            continue
        # a difference counts only beyond the seed spread (the larger std of the two; 0 with one seed each)
        sign = [(d > max(r["std"], b["std"])) - (d < -max(r["std"], b["std"])) for _, d, r, b in deltas]
        wins, losses = sign.count(1), sign.count(-1)
        verdict = (
            "supported" if wins == len(deltas)
            else "contradicted" if losses == len(deltas)
            else "not shown: within the seed spread" if not wins and not losses
            else "mixed"
        )  # fmt: skip

        def note(r, b, beyond):
            if r["seeds"] < 2 or b["seeds"] < 2:
                return ", one seed: no spread to compare with"
            return "" if beyond else ", within the spread"

        detail = "; ".join(
            f"{n} labels: {_mean_std(r)} vs {_mean_std(b)} ({d:+.1f}{note(r, b, k)})"
            for (n, d, r, b), k in zip(deltas, sign)
        )
        lines.append(
            f"- **{backbone} vs scratch: {verdict}** ({wins}/{len(deltas)} budgets better, {losses} worse, by more "
            f"than the seed spread). {detail}."
        )
        if len(deltas) > 1:
            small, large = deltas[0], deltas[-1]
            shrinks = small[1] > large[1]
            lines.append(
                f"  - Pretraining helps more (or hurts less) with fewer labels: {'yes' if shrinks else 'no'} "
                f"({small[0]} labels {small[1]:+.1f}, {large[0]} labels {large[1]:+.1f})."
            )
    return lines


def translation_claims(rows: list[dict], trend: dict | None = None) -> list[str]:
    by_name = {r["name"]: r for r in rows}
    lines = []
    scored = [r["bleu"] for r in rows if r["bleu"] is not None]
    if scored and max(scored) < 1.0:
        return [
            f"- **Inconclusive**: every model is below 1 BLEU (best {max(scored):.2f}); the runs are too short to "
            "test the lecture's claims (the smoke preset only checks that every stage runs)."
        ]
    attn = [r for r in rows if r["model"] == "rnn" and r["attention"] != "none" and r["bleu"] is not None]
    none = by_name.get("rnn_none")
    if none and attn and none["bleu"] is not None:
        best = max(attn, key=lambda r: r["bleu"])
        worst = min(attn, key=lambda r: r["bleu"])
        verdict = "supported" if none["bleu"] < worst["bleu"] else "contradicted"
        lines.append(
            f"- **Attention removes the fixed-vector bottleneck: {verdict}.** No attention {none['bleu']:.2f} BLEU; "
            f"with attention {worst['bleu']:.2f} ({worst['attention']}) to {best['bleu']:.2f} ({best['attention']})."
        )
        gaps = []
        for bucket in none["bleu_by_length"]:
            mates = [
                b["bleu"] for r in attn for b in r["bleu_by_length"] if b["source_words"] == bucket["source_words"]
            ]
            if mates:
                gaps.append((bucket["source_words"], round(statistics.fmean(mates) - bucket["bleu"], 2)))
        by_bucket = f"{', '.join(f'{w} words {g:+.1f}' for w, g in gaps)}; mean attention RNN minus no attention"
        if trend:  # every sentence, with its interval: a bucket of the longest sentences may hold a few dozen
            low, high = trend["ci95"]
            verdict = "yes" if low > 0 else "no" if high < 0 else "not shown (the interval includes 0)"
            lines.append(
                f"  - The gap grows with source length: {verdict}. Per sentence, the chrF gap changes by "
                f"{trend['slope_per_word']:+.2f} per source word (95% bootstrap interval {low:+.2f} to {high:+.2f}, "
                f"{trend['sentences']:,} sentences); BLEU by bucket: {by_bucket}."
            )
        elif len(gaps) > 1:
            grows = all(b >= a for (_, a), (_, b) in zip(gaps, gaps[1:])) or gaps[-1][1] > gaps[0][1]
            lines.append(f"  - The gap grows with source length: {'yes' if grows else 'no'} ({by_bucket}).")
    if len(attn) > 1:
        lines.append(
            "- Scoring functions: "
            + ", ".join(f"{r['attention']} {r['bleu']:.2f}" for r in sorted(attn, key=lambda r: -r["bleu"]))
            + f" BLEU (spread {max(r['bleu'] for r in attn) - min(r['bleu'] for r in attn):.2f})."
        )
    transformer = by_name.get("transformer")
    if transformer and attn and transformer["bleu"] is not None:
        best = max(attn, key=lambda r: r["bleu"])
        speed = ""
        if transformer["tokens_per_second"] and best["tokens_per_second"]:
            speed = (
                f"; training speed {transformer['tokens_per_second']:,.0f} vs {best['tokens_per_second']:,.0f} "
                f"tokens/s ({transformer['tokens_per_second'] / best['tokens_per_second']:.2f}x)"
            )
        verdict = "supported" if transformer["bleu"] >= best["bleu"] else "contradicted at this budget"
        lines.append(
            f"- **The Transformer matches or beats the best attention RNN: {verdict}.** {transformer['bleu']:.2f} vs "
            f"{best['bleu']:.2f} BLEU ({best['attention']}){speed}."
        )
    return lines


def write_report(args: ReportArguments, report: dict) -> None:
    out = args.output_dir
    lines = ["# Lecture report: pretraining, fine-tuning, attention", ""]
    lines.append(f"Generated by `recipes/lecture_report.py` on {time.strftime('%Y-%m-%d %H:%M')}; settings in "
                 "`report.json` (`settings`); every run's outputs and log under `runs/`.")  # fmt: skip
    if args.parallel_runs > 1:
        lines.append(f"Runs trained {args.parallel_runs} side by side, {threads_per_run(args, args.parallel_runs)} CPU thread(s) "
                     "each: a run's tokens/s is its share of the machine.")  # fmt: skip
    lines.append("")
    if report.get("pretrain"):
        lines += [
            "## Pretraining",
            "",
            "| model | corpus | task text added | steps | tokens seen | held-out metric |",
            "|---|---|---|---|---:|---|",
        ]
        for kind, info in report["pretrain"].items():
            corpus = info.get("corpus") or corpus_name(args)
            last = info["curve"][-1] if info["curve"] else {}
            metric = (
                f"masked accuracy {100 * last.get('eval_accuracy', float('nan')):.1f}%"
                if kind == "bert"
                else f"perplexity {last.get('eval_perplexity', float('nan')):.1f}"
            )
            if "eval_rtd_accuracy" in last:  # ELECTRA: the encoder detects replaced tokens, the generator fills masks
                kind = "bert (ELECTRA)"
                metric = (f"replaced-token accuracy {100 * last['eval_rtd_accuracy']:.1f}% (recall "
                          f"{100 * last['eval_rtd_recall']:.1f}%), generator's {metric}")  # fmt: skip
            tokens = info["results"].get("tokens_seen")
            lines.append(
                f"| {kind} | {corpus} | {'yes' if info['task_adaptive'] else 'no'} | {last.get('step', '?')} | "
                f"{f'{tokens / 1e6:.1f} M' if tokens else '?'} | {metric} |"
            )
        lines += ["", "![pretraining curves](pretraining_curves.png)", ""]
    if report.get("classification"):
        summary = report["classification_summary"]
        budgets = sorted({r["labels"] for r in summary})
        lines += ["## Classification: pretrained vs scratch", ""]
        lines.append("Validation accuracy (%), mean ± std over seeds (seeds in brackets).")
        lines += [
            "",
            "| backbone | " + " | ".join(f"{b} labels" for b in budgets) + " |",
            "|---" * (len(budgets) + 1) + "|",
        ]
        for backbone in dict.fromkeys(r["backbone"] for r in summary):
            cells = []
            for b in budgets:
                r = next((r for r in summary if r["backbone"] == backbone and r["labels"] == b), None)
                spread = f" ± {r['std']:.1f}" if r and r["seeds"] > 1 else ""  # one seed: no spread, not 0
                cells.append(f"{r['mean']:.1f}{spread} ({r['seeds']})" if r else "-")
            lines.append(f"| {backbone} | " + " | ".join(cells) + " |")
        lines += ["", "![accuracy vs labels](classification_learning_curve.png)", "", "Claims:", ""]
        lines += classification_claims(summary) + [""]
    if report.get("translation"):
        lines += ["## Translation: attention and the Transformer", ""]
        lines += [
            "| model | attention | BLEU | chrF | split | tokens/s (training) | parameters | steps |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["translation"]:
            speed = f"{r['tokens_per_second']:,.0f}" if r["tokens_per_second"] else "-"
            lines.append(
                f"| {r['model']} | {r['attention']} | {r['bleu']} | {r['chrf']} | {r['split']} | {speed} | {r['parameters']} | {r['steps']} |"
            )
        lines += ["", "![BLEU by source length](bleu_by_length.png)", "", "Claims:", ""]
        lines += translation_claims(report["translation"], report.get("translation_length_trend")) + [""]
        for png in report.get("attention_maps", []):
            lines += [f"![{png}]({png})", ""]
    if report.get("summarization"):
        lines += [
            "## Summarization: BERT-initialised encoder vs scratch",
            "",
            "| model | ROUGE-1 | ROUGE-2 | ROUGE-L | split | steps |",
            "|---|---|---|---|---|---|",
        ]
        for r in report["summarization"]:
            lines.append(
                f"| {r['model']} | {r['rouge1']} | {r['rouge2']} | {r['rougeL']} | {r['split']} | {r['steps']} |"
            )
        rows = {r["model"]: r for r in report["summarization"]}
        if "scratch" in rows and "bert_encoder" in rows and rows["scratch"]["rouge1"] is not None:
            delta = rows["bert_encoder"]["rouge1"] - rows["scratch"]["rouge1"]
            verdict = "supported" if delta > 0 else "contradicted"
            lines += ["", f"- **A pretrained encoder helps summarization: {verdict}** (ROUGE-1 {delta:+.2f})."]
        lines.append("")
    with open(os.path.join(out, "REPORT.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


@exit_on_user_error
def main(args: ReportArguments) -> dict:
    os.makedirs(args.output_dir, exist_ok=True)
    report_path = os.path.join(args.output_dir, "report.json")
    report = read_json(report_path) if os.path.isfile(report_path) else {}
    report["settings"] = asdict(args)
    stages = args.stage_list
    start = time.perf_counter()

    cls_data = None
    if "classification" in stages or (args.task_adaptive_pretraining and "pretrain" in stages):
        cls_data = prepare_classification_data(args)
    if "pretrain" in stages:
        report["pretrain"] = stage_pretrain(args, cls_data)
    if "classification" in stages:
        missing = [b for b in args.backbones if b != "scratch" and not os.path.isfile(
            os.path.join(pretrain_paths(args)[b], "config.json"))]  # fmt: skip
        if missing:
            raise UserError(
                f"classification needs the pretrained {missing} from the pretrain stage (add it to --stages)"
            )
        report["classification"] = stage_classification(args, cls_data)
        report["classification_summary"] = summarize_classification(report["classification"])
        plot_learning_curves(
            report["classification_summary"], os.path.join(args.output_dir, "classification_learning_curve.png")
        )
    if "pretrain" in stages:
        plot_pretraining(report["pretrain"], os.path.join(args.output_dir, "pretraining_curves.png"))
    if "translation" in stages:
        report["translation"] = stage_translation(args)
        report["translation_length_trend"] = length_trend(args, report["translation"])
        plot_bleu_by_length(report["translation"], os.path.join(args.output_dir, "bleu_by_length.png"))
        report["attention_maps"] = attention_maps(args, report["translation"], first_test_pair(args))
    if "summarization" in stages:
        report["summarization"] = stage_summarization(args)
    report["seconds_this_invocation"] = round(time.perf_counter() - start, 1)
    write_json(report_path, report)
    write_report(args, report)
    print(f"report written: {os.path.join(args.output_dir, 'REPORT.md')} and report.json "
          f"({report['seconds_this_invocation']:.0f} s)")  # fmt: skip
    return report


if __name__ == "__main__":
    try:
        main(*exit_on_user_error(parse_args)())
    except RunFailed as err:
        print(f"error: {err}; rerun the same command to continue", file=sys.stderr)
        sys.exit(1)
