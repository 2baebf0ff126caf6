"""A new user's first hour: every `--help`, portable configs whose data resolves offline, no machine paths.

The task configs name Hub datasets (GLUE SST-2, Multi30k, DialogSum) and document, in their header, the offline
override with local files. Both forms are resolved here from small look-alike files: a local folder shaped like the
Hub dataset (same columns, splits, label names) stands in for the Hub, and files shaped like ../shared/data stand in
for the local copies.
"""

import gzip
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO, load_recipe

RECIPES = ("pretrain_bert", "pretrain_elmo", "finetune_classification", "finetune_seq2seq")
TASK_CONFIGS = sorted(
    os.path.relpath(os.path.join(root, name), REPO)
    for folder in ("classification", "translation", "summarization")
    for root, _, files in os.walk(os.path.join(REPO, "recipes", "configs", folder))
    for name in files
    if name.endswith(".yaml") and name.startswith(("sst2_", "multi30k_", "dialogsum_"))
)
ENV = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}


# --- every --help --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_help_lists_options_with_defaults(recipe):
    result = subprocess.run(
        [sys.executable, os.path.join("recipes", f"{recipe}.py"), "--help"],
        capture_output=True, text=True, cwd=REPO, env=ENV, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = " ".join(result.stdout.split())  # argparse wraps lines
    for flag in ("--output_dir", "--config", "--train_file", "--report_to", "--validation_split_percentage"):
        assert flag in out, flag
    assert "(default: outputs/run)" in out and "(default: 5)" in out


def _subcommands():
    from toolkit.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return parser, action.choices


def test_toolkit_help_names_every_subcommand():
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "--help"], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    _, choices = _subcommands()
    for name in ("push", "convert-hf-bert", "evaluate", "visualize-attention", "demo-data", "embed"):
        assert name in choices and name in result.stdout, name


@pytest.mark.parametrize(
    "command", ["push", "convert-hf-bert", "evaluate", "visualize-attention", "demo-data", "embed"]
)
def test_toolkit_subcommand_help_shows_defaults(command, capsys):
    from toolkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"usage: toolkit {command}" in out
    if command != "convert-hf-bert":  # positional arguments only
        assert "(default:" in out or "default:" in out, out


# --- portable files --------------------------------------------------------------------------------------------------

# Absolute paths of one machine: home folders, this project's work folder, mount points, Windows drives.
# (Spelled in pieces so that this file does not match itself.)
_ROOTS = ["wo" + "rk", "ho" + "me", "Us" + "ers", "ro" + "ot", "mn" + "t", "scr" + "atch"]
MACHINE_PATH = re.compile(r"(?<![\w.~-])(" + "|".join(f"/{root}/" for root in _ROOTS) + r"|[A-Z]:\\" + "Us" + "ers)")


def test_no_tracked_file_names_an_absolute_machine_path():
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=REPO, check=True).stdout.split()
    offenders = []
    for rel in files:
        path = os.path.join(REPO, rel)
        if not os.path.isfile(path) or os.path.getsize(path) > 2_000_000:
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" in data:  # binary (images, weights)
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)


def test_machine_path_pattern_catches_what_it_should():
    assert MACHINE_PATH.search("train_file: " + "/wo" + "rk/shared/data/sst2/train.tsv")
    assert MACHINE_PATH.search("model: " + "/ho" + "me/alice/bert")
    assert not MACHINE_PATH.search("train_file: ../shared/data/sst2/train.tsv")
    assert not MACHINE_PATH.search("see https://github.com/huggingface/datasets/blob/main/README.md")


# --- task configs: Hub datasets, resolved offline from look-alike files ---------------------------------------------

SENTENCES = ["a charming journey", "bleak and desperate", "the best film of the year", "dull , dull , dull"] * 3
GERMAN = ["Ein Hund läuft im Schnee.", "Zwei Männer spielen Fußball.", "Eine Frau liest.", "Kinder lachen."] * 3
ENGLISH = ["A dog runs in the snow.", "Two men play soccer.", "A woman reads.", "Children laugh."] * 3
DIALOGUES = ["#Person1#: Hi.\n#Person2#: Hello, how are you?", "#Person1#: The bill, please.\n#Person2#: Here."] * 6


def _write_jsonl(path, rows, compress=False):
    opener = gzip.open if compress else open
    with opener(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def hub_lookalike(kind: str, root: str) -> str:
    """A local folder that `datasets.load_dataset` reads like the Hub dataset a config names."""
    folder = os.path.join(root, "hub", kind)
    os.makedirs(folder, exist_ok=True)
    if kind == "glue":  # glue/sst2: sentence, label (ClassLabel negative/positive), idx; test labels are -1
        import datasets

        features = datasets.Features(
            sentence=datasets.Value("string"),
            label=datasets.ClassLabel(names=["negative", "positive"]),
            idx=datasets.Value("int32"),
        )
        os.makedirs(os.path.join(folder, "sst2"), exist_ok=True)
        for split in ("train", "validation", "test"):
            labels = [-1] * len(SENTENCES) if split == "test" else [i % 2 for i in range(len(SENTENCES))]
            rows = {"sentence": SENTENCES, "label": labels, "idx": list(range(len(SENTENCES)))}
            datasets.Dataset.from_dict(rows, features=features).to_parquet(
                os.path.join(folder, "sst2", f"{split}-00000-of-00001.parquet")
            )
        splits = "\n".join(f"  - split: {s}\n    path: sst2/{s}-*" for s in ("train", "validation", "test"))
        with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as f:
            f.write(f"---\nconfigs:\n- config_name: sst2\n  data_files:\n{splits}\n---\n")
    elif kind == "multi30k":  # bentrevett/multi30k: en, de
        for split in ("train", "validation", "test"):
            _write_jsonl(os.path.join(folder, f"{split}.jsonl"), [{"en": e, "de": d} for e, d in zip(ENGLISH, GERMAN)])
    elif kind == "dialogsum":  # knkarthick/dialogsum: id, dialogue, summary, topic
        for split in ("train", "validation", "test"):
            rows = [
                {"id": f"{split}_{i}", "dialogue": d, "summary": f"#Person1# greets {i}.", "topic": "greeting"}
                for i, d in enumerate(DIALOGUES)
            ]
            _write_jsonl(os.path.join(folder, f"{split}.jsonl"), rows)
    return folder


def local_lookalike(root: str) -> str:
    """Files shaped like ../shared/data (sst2 tsv, Multi30k line-aligned text, DialogSum jsonl)."""
    data = os.path.join(root, "shared", "data")
    os.makedirs(os.path.join(data, "sst2"))
    for name in ("train", "dev", "test_labeled"):
        with open(os.path.join(data, "sst2", f"{name}.tsv"), "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(SENTENCES)))
    os.makedirs(os.path.join(data, "multi30k_en_de"))
    for name in ("train", "val", "test_2016_flickr"):
        for lang, lines in (("de", GERMAN), ("en", ENGLISH)):
            with open(os.path.join(data, "multi30k_en_de", f"{name}.{lang}"), "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
    os.makedirs(os.path.join(data, "dialogsum"))
    rows = [{"fname": f"x_{i}", "dialogue": d, "summary": f"#Person1# greets {i}.", "topic": "greeting"} for i, d in
            enumerate(DIALOGUES)]  # fmt: skip
    _write_jsonl(os.path.join(data, "dialogsum", "train.jsonl.gz"), rows, compress=True)
    _write_jsonl(os.path.join(data, "dialogsum", "dev.jsonl"), rows)
    test = [{"fname": r["fname"], "dialogue": r["dialogue"], "summary1": r["summary"], "topic1": "greeting",
             "summary2": "Two people talk.", "topic2": "talk", "summary3": "A greeting.", "topic3": "greet"}
            for r in rows]  # fmt: skip
    _write_jsonl(os.path.join(data, "dialogsum", "test.jsonl"), test)
    return data


def offline_flags(config: str) -> list[str]:
    """The flags after `--config FILE` on the header line `# offline: <command>`."""
    with open(os.path.join(REPO, config), encoding="utf-8") as f:
        header = [line[1:].strip() for line in f if line.startswith("#")]
    offline = [line[len("offline:") :] for line in header if line.startswith("offline:")]
    assert len(offline) == 1, f"{config}: expected one '# offline: <command>' header line"
    words = shlex.split(offline[0])
    assert words[:2] == ["accelerate", "launch"] and config in words, offline[0]
    return words[words.index(config) + 1 :]


def resolve(config: str, flags: list[str], tmp_path) -> dict:
    """Parse `config` + `flags` with its recipe and load its data the way the recipe does: {split: examples}."""
    folder = config.split(os.sep)[2]
    recipe = load_recipe("finetune_classification" if folder == "classification" else "finetune_seq2seq")
    argv = ["--config", config, *flags, "--output_dir", str(tmp_path / "run")]
    if folder == "classification":
        args, data_args, train_args = recipe.parse_args(argv)
        raw = recipe.load_raw_datasets(data_args, need_validation=True, seed=train_args.seed)
        id2label, label2id = recipe.label_vocabulary(raw["train"], args.label_column)
        if args.label_names:
            id2label, label2id = recipe.named_labels(id2label, args.label_names)
        assert id2label == {0: "negative", 1: "positive"}
        return {s: recipe.encode_split(raw[s], args, data_args.text_column, label2id, f"the {s} data") for s in raw}
    model_args, seq_args, data_args, train_args = recipe.parse_args(argv)
    return recipe.load_pairs(seq_args, data_args, seed=train_args.seed)


def test_every_task_config_is_covered():
    assert len(TASK_CONFIGS) >= 10, TASK_CONFIGS  # sst2_* x4, multi30k_* x4, dialogsum_* x2 (and any added later)


@pytest.mark.parametrize("config", TASK_CONFIGS)
def test_task_config_names_a_hub_dataset_and_resolves_it(config, tmp_path, monkeypatch):
    import yaml

    with open(os.path.join(REPO, config), encoding="utf-8") as f:
        values = yaml.safe_load(f)
    hub = {
        "sst2": ("glue", "sst2"),
        "multi30k": ("bentrevett/multi30k", None),
        "dialogsum": ("knkarthick/dialogsum", None),
    }
    kind = os.path.basename(config).split("_")[0]
    assert (values.get("dataset_name"), values.get("dataset_config_name")) == hub[kind]
    assert not any(k in values for k in ("train_file", "validation_file", "test_file"))
    folder = hub_lookalike({"sst2": "glue", "multi30k": "multi30k", "dialogsum": "dialogsum"}[kind], str(tmp_path))
    monkeypatch.chdir(REPO)
    splits = resolve(config, ["--dataset_name", folder], tmp_path)
    assert set(splits) == {"train", "validation", "test"}
    if kind == "sst2":
        assert splits["train"][0]["text"] == SENTENCES[0] and splits["train"][1]["label"] == 1
        assert "label" not in splits["test"][0]  # the Hub's test split is unlabelled
    elif kind == "multi30k":
        assert splits["train"][0] == (GERMAN[0], ENGLISH[0])  # de -> en
    else:
        assert splits["validation"][1] == (DIALOGUES[1], "#Person1# greets 1.")


@pytest.mark.parametrize("config", TASK_CONFIGS)
def test_task_config_offline_override_resolves_local_files(config, tmp_path, monkeypatch):
    flags = offline_flags(config)
    assert all(not f.startswith("/") for f in flags)
    data = local_lookalike(str(tmp_path))
    flags = [f.replace("../shared/data", data) for f in flags]
    monkeypatch.chdir(REPO)
    splits = resolve(config, flags, tmp_path)
    assert set(splits) == {"train", "validation", "test"}
    kind = os.path.basename(config).split("_")[0]
    if kind == "sst2":
        assert [it["label"] for it in splits["test"][:2]] == [0, 1]  # the local test file is labelled
    elif kind == "multi30k":
        assert splits["test"][1] == (GERMAN[1], ENGLISH[1])
    else:
        assert splits["test"][0] == (DIALOGUES[0], "#Person1# greets 0.")  # summary1 of three references


@pytest.mark.parametrize("config", TASK_CONFIGS)
def test_offline_override_names_files_that_exist_here(config, shared_data):
    flags = offline_flags(config)
    files = {flag: value for flag, value in zip(flags[::2], flags[1::2]) if flag.endswith("_file")}
    assert set(files) == {"--train_file", "--validation_file", "--test_file"}, flags
    for value in files.values():
        path = os.path.normpath(os.path.join(REPO, value))
        assert os.path.exists(path) or os.path.exists(path + ".de"), path


# --- trackers --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb", "all"])
def test_report_to_a_tracker_that_is_not_installed_is_a_one_line_error(tracker, monkeypatch):
    import importlib.util

    from toolkit.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("tensorboard", "tensorboardX", "wandb") else real(name, *a),
    )
    recipe = load_recipe("finetune_classification")
    with pytest.raises(UserError) as err:
        recipe.parse_args(["--dataset_name", "demo", "--report_to", tracker])
    message = str(err.value)
    assert "\n" not in message and "not installed" in message and "--report_to none" in message


def test_report_to_missing_tracker_stops_the_recipe_before_any_work(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        pytest.skip("tensorboard is installed here")
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "recipes/pretrain_bert.py", "--config", "recipes/configs/bert/quickstart.yaml",
         "--report_to", "tensorboard", "--output_dir", str(out)],
        capture_output=True, text=True, cwd=REPO, env=ENV, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: report_to 'tensorboard'")
    assert not out.exists()


# --- CLI failures a user can cause are one line -----------------------------------------------------------------------


def _tiny_bert_folder(path):
    from toolkit.models.bert import ToolkitBertConfig, ToolkitBertForMaskedLM

    config = ToolkitBertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    ToolkitBertForMaskedLM(config).save_pretrained(path)
    (path / "README.md").write_text("---\nlibrary_name: transformers\n---\n# tiny\n")
    return str(path)


def _one_line_exit(capsys, argv) -> str:
    from toolkit.cli import main

    capsys.readouterr()  # drop what building the fixture printed
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    return err


def test_push_without_network_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = _tiny_bert_folder(tmp_path / "run")
    err = _one_line_exit(capsys, ["push", folder, "--hub_model_id", "someone/tiny"])
    assert "could not push" in err and "someone/tiny" in err and "toolkit push" in err


def test_push_of_an_unfinished_run_is_one_line(tmp_path, capsys):
    err = _one_line_exit(capsys, ["push", str(tmp_path), "--hub_model_id", "someone/tiny"])
    assert "no config.json" in err


def test_visualize_attention_on_a_model_that_is_not_seq2seq_is_one_line(tmp_path, capsys):
    folder = _tiny_bert_folder(tmp_path / "bert")
    err = _one_line_exit(capsys, ["visualize-attention", "--model", folder, "--source", "a b", "--out", "x.png"])
    assert "toolkit_bert" in err and "not an encoder-decoder" in err
    err = _one_line_exit(capsys, ["visualize-attention", "--model", str(tmp_path / "nope"), "--source", "a b"])
    assert "no config.json" in err
