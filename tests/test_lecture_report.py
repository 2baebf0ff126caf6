"""recipes/lecture_report.py: stages resume without redoing finished runs, report.json holds every number, and the
smoke preset runs end to end (slow)."""

import json
import os
import random
import subprocess
import sys

import pytest

from tests.conftest import REPO, load_recipe

report = load_recipe("lecture_report")


def fake_recipe_runs(monkeypatch):
    """Replace the launched recipes by a stub that writes the files a finished run leaves; returns the calls."""
    calls = []

    def fake_call(cmd, stdout=None, stderr=None, cwd=None, env=None):
        out = cmd[cmd.index("--output_dir") + 1]
        calls.append(cmd)
        seed = int(cmd[cmd.index("--seed") + 1])
        with open(os.path.join(out, "all_results.json"), "w") as f:
            json.dump({"validation_accuracy": 0.5 + 0.01 * seed, "validation_macro_f1": 0.4}, f)
        with open(os.path.join(out, "log_history.json"), "w") as f:
            json.dump([{"step": 1, "loss": 1.0}], f)
        return 0

    monkeypatch.setattr(report.subprocess, "call", fake_call)
    return calls


def test_rerun_skips_finished_runs_and_resumes_cut_ones(tmp_path, monkeypatch, capsys):
    calls = fake_recipe_runs(monkeypatch)
    argv = [
        "--output_dir", str(tmp_path), "--stages", "classification", "--backbones", "scratch",
        "--classification_dataset_name", "demo", "--classification_dataset_config_name", "classification",
        "--text_column", "text", "--label_budgets", "50", "200", "--seeds", "0", "1", "--max_seeded_budget", "50",
    ]  # fmt: skip
    first = report.main(*report.parse_args(argv))
    assert len(calls) == 3  # 50 labels x 2 seeds + 200 labels x 1 seed
    assert [(r["labels"], r["seed"]) for r in first["classification"]] == [(50, 0), (50, 1), (200, 0)]
    assert {r["labels"]: r["seeds"] for r in first["classification_summary"]} == {50: 2, 200: 1}
    subsets = [json.loads(line) for line in open(tmp_path / "data" / "train_50_seed0.jsonl")]
    assert len(subsets) == 50 and set(subsets[0]) == {"text", "label"}
    assert (
        open(tmp_path / "data" / "train_50_seed0.jsonl").read()
        != open(tmp_path / "data" / "train_50_seed1.jsonl").read()
    )

    calls.clear()
    report.main(*report.parse_args(argv))
    assert calls == []  # everything finished before: nothing re-run
    assert capsys.readouterr().out.count("done before, skipped") >= 3

    # a run interrupted after a checkpoint resumes from it; one interrupted before any checkpoint starts over
    cut = tmp_path / "runs" / "classification" / "scratch_labels50_seed1"
    os.remove(cut / "all_results.json")
    (cut / "checkpoints" / "step-00000010").mkdir(parents=True)
    fresh = tmp_path / "runs" / "classification" / "scratch_labels200_seed0"
    os.remove(fresh / "all_results.json")
    (fresh / "stale.txt").write_text("from the killed run")
    report.main(*report.parse_args(argv))
    assert len(calls) == 2
    resumed = [c for c in calls if str(cut) in c][0]
    assert resumed[-2:] == ["--resume_from_checkpoint", "latest"]
    assert "--resume_from_checkpoint" not in [c for c in calls if str(fresh) in c][0]
    assert not (fresh / "stale.txt").exists()
    saved = json.load(open(tmp_path / "report.json"))
    assert saved["classification"][0] == {
        "backbone": "scratch", "labels": 50, "seed": 0, "accuracy": 50.0, "macro_f1": 40.0, "train_seconds": None,
    }  # fmt: skip
    assert "scratch" in open(tmp_path / "REPORT.md").read()


@pytest.mark.parametrize("word_channel", [True, False])
def test_elmo_classifiers_get_the_word_channel(tmp_path, monkeypatch, word_channel):
    calls = fake_recipe_runs(monkeypatch)
    for kind in ("bert", "elmo"):  # the pretrain stage's outputs, as a finished run leaves them
        os.makedirs(tmp_path / "runs" / "pretrain" / kind)
        (tmp_path / "runs" / "pretrain" / kind / "config.json").write_text("{}")
    argv = [
        "--output_dir", str(tmp_path), "--stages", "classification", "--backbones", "scratch", "elmo", "bert",
        "--classification_dataset_name", "demo", "--classification_dataset_config_name", "classification",
        "--text_column", "text", "--label_budgets", "50", "--seeds", "0",
        "--elmo_word_embeddings", str(word_channel).lower(),
    ]  # fmt: skip
    report.main(*report.parse_args(argv))
    flags = {os.path.basename(c[c.index("--output_dir") + 1]).split("_")[0]: c for c in calls}
    assert set(flags) == {"scratch", "elmo", "bert"}
    for name, cmd in flags.items():
        has_channel = "--elmo_word_embeddings" in cmd and cmd[cmd.index("--elmo_word_embeddings") + 1] == "true"
        assert has_channel == (word_channel and name == "elmo"), name


def test_parallel_runs_train_side_by_side_with_a_share_of_the_cores(tmp_path, monkeypatch, capsys):
    """parallel_runs 2: two runs at once, each with cores / 2 threads, results in the order of the runs; a failed run
    lets the one beside it finish, starts no more, and is raised (a rerun then continues)."""
    import threading
    import time

    monkeypatch.setattr(report.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    running, seen, lock = [], [], threading.Lock()

    def fake_call(cmd, stdout=None, stderr=None, cwd=None, env=None):
        out = cmd[cmd.index("--output_dir") + 1]
        seed = int(cmd[cmd.index("--seed") + 1])
        with lock:
            running.append(out)
            seen.append((len(running), env["OMP_NUM_THREADS"]))
        time.sleep(0.3 if seed == 0 else 0.1)  # seed 0 finishes last: results still come in the runs' order
        with lock:
            running.remove(out)
        if os.path.basename(out) == fail_at[0]:
            return 1
        with open(os.path.join(out, "all_results.json"), "w") as f:
            json.dump({"validation_accuracy": 0.5 + 0.01 * seed}, f)
        return 0

    monkeypatch.setattr(report.subprocess, "call", fake_call)
    argv = [
        "--output_dir", str(tmp_path), "--stages", "classification", "--backbones", "scratch", "--parallel_runs", "2",
        "--classification_dataset_name", "demo", "--classification_dataset_config_name", "classification",
        "--text_column", "text", "--label_budgets", "50", "--seeds", "0", "1", "2", "3",
    ]  # fmt: skip
    fail_at = ["scratch_labels50_seed1"]
    with pytest.raises(report.RunFailed, match="classification run 'scratch_labels50_seed1' failed"):
        report.main(*report.parse_args(argv))
    assert max(n for n, _ in seen) == 2 and {t for _, t in seen} == {"2"}
    done = sorted(os.listdir(tmp_path / "runs" / "classification"))
    assert done == ["scratch_labels50_seed0", "scratch_labels50_seed1"]  # seed 0 finished beside the failure
    assert (tmp_path / "runs" / "classification" / "scratch_labels50_seed0" / "all_results.json").exists()
    fail_at[0], seen[:] = "", []
    first = report.main(*report.parse_args(argv))
    assert [r["seed"] for r in first["classification"]] == [0, 1, 2, 3]
    assert [r["accuracy"] for r in first["classification"]] == [50.0, 51.0, 52.0, 53.0]
    assert len(seen) == 3 and "scratch_labels50_seed0: done before, skipped" in capsys.readouterr().out


def test_side_by_side_the_largest_label_budgets_start_first(tmp_path, monkeypatch):
    """Longest runs first (parallel_runs), so no long run is left alone at the end; report.json keeps the order of
    the budgets."""
    monkeypatch.setattr(report.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    started = []

    def fake_call(cmd, stdout=None, stderr=None, cwd=None, env=None):
        out = cmd[cmd.index("--output_dir") + 1]
        started.append(os.path.basename(out))
        with open(os.path.join(out, "all_results.json"), "w") as f:
            json.dump({"validation_accuracy": 0.5}, f)
        return 0

    monkeypatch.setattr(report.subprocess, "call", fake_call)
    handed_out = []  # the order the pool takes jobs in (first in, first started); `started` races between threads
    run_recipes = report.run_recipes

    def spy(args, stage, jobs):
        handed_out.extend(name for name, _, _ in jobs)
        return run_recipes(args, stage, jobs)

    monkeypatch.setattr(report, "run_recipes", spy)
    argv = [
        "--output_dir", str(tmp_path), "--stages", "classification", "--backbones", "scratch", "--parallel_runs", "2",
        "--classification_dataset_name", "demo", "--classification_dataset_config_name", "classification",
        "--text_column", "text", "--label_budgets", "20", "50", "--seeds", "0", "1", "--max_seeded_budget", "20",
    ]  # fmt: skip
    result = report.main(*report.parse_args(argv))
    assert handed_out[0] == "scratch_labels50_seed0" and sorted(started) == sorted(handed_out)  # in the first pair
    assert [(r["labels"], r["seed"]) for r in result["classification"]] == [(20, 0), (20, 1), (50, 0)]


def test_unknown_stage_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "lecture_report.py"), "--stages", "pretrain,finetune",
         "--output_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: stages: unknown stage(s) ['finetune']")


def test_classification_without_pretrained_backbone_is_one_line(tmp_path, monkeypatch, capsys):
    fake_recipe_runs(monkeypatch)
    argv = ["--output_dir", str(tmp_path), "--stages", "classification", "--classification_dataset_name", "demo",
            "--classification_dataset_config_name", "classification", "--text_column", "text"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        report.main(*report.parse_args(argv))
    assert exit_info.value.code == 2
    assert "needs the pretrained ['elmo', 'bert'] from the pretrain stage" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["smoke", "cpu", "gpu"])
def test_presets_name_configs_that_exist_and_parse(preset):
    (args,) = report.parse_args(["--config", f"recipes/configs/report/{preset}.yaml"])
    for key, recipe in (("bert_config", "pretrain_bert"), ("elmo_config", "pretrain_elmo"),
                        ("rnn_config", "finetune_seq2seq"), ("transformer_config", "finetune_seq2seq")):  # fmt: skip
        path = getattr(args, key)
        assert os.path.isfile(os.path.join(REPO, path)), f"{preset}.yaml: {key} {path} does not exist"
        load_recipe(recipe).parse_args(["--config", os.path.join(REPO, path)])
    for value in vars(args).values():
        assert not (isinstance(value, str) and value.startswith("/")), value


@pytest.mark.slow
def test_smoke_preset_end_to_end(tmp_path, shared_data):
    """The smoke preset as shipped, with Multi30k from ../shared/data (cut to 2,000 / 60 / 60 pairs)."""
    mt = tmp_path / "multi30k"
    mt.mkdir()
    for split, n in (("train", 2000), ("val", 60), ("test_2016_flickr", 60)):
        for lang in ("de", "en"):
            lines = open(os.path.join(shared_data, "multi30k_en_de", f"{split}.{lang}"), encoding="utf-8").readlines()
            (mt / f"{split}.{lang}").write_text("".join(lines[:n]), encoding="utf-8")
    out = tmp_path / "report"
    cmd = [
        sys.executable, os.path.join(REPO, "recipes", "lecture_report.py"),
        "--config", "recipes/configs/report/smoke.yaml", "--output_dir", str(out),
        "--translation_train_file", str(mt / "train"), "--translation_validation_file", str(mt / "val"),
        "--translation_test_file", str(mt / "test_2016_flickr"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.load(open(out / "report.json"))
    assert set(data["pretrain"]) == {"bert", "elmo"} and data["pretrain"]["bert"]["task_adaptive"]
    cls = data["classification"]
    assert {(r["backbone"], r["labels"], r["seed"]) for r in cls} == {
        (b, n, s) for b in ("scratch", "elmo", "bert") for n, s in ((100, 0), (100, 1), (400, 0))
    }
    assert all(0.0 <= r["accuracy"] <= 100.0 for r in cls)
    tr = {r["name"]: r for r in data["translation"]}
    assert set(tr) == {"rnn_none", "rnn_dot", "rnn_bilinear", "rnn_additive", "transformer"}
    assert tr["rnn_none"]["attention"] == "none" and tr["transformer"]["model"] == "transformer"
    assert all(r["bleu"] is not None and r["tokens_per_second"] and r["bleu_by_length"] for r in tr.values())
    for png in ("classification_learning_curve.png", "pretraining_curves.png", "bleu_by_length.png",
                "attention_rnn_additive.png"):  # fmt: skip
        assert (out / png).stat().st_size > 5000, png
    assert not (out / "attention_rnn_none.png").exists()
    text = (out / "REPORT.md").read_text()
    assert "bert vs scratch" in text and "Translation: attention and the Transformer" in text
    assert "Attention removes the fixed-vector bottleneck" in text or "**Inconclusive**" in text


def test_classification_claims_count_only_differences_beyond_the_seed_spread():
    def row(backbone, labels, mean, std):
        return {"backbone": backbone, "labels": labels, "mean": mean, "std": std, "seeds": 3}

    scratch = [row("scratch", 500, 63.1, 1.4), row("scratch", 2000, 72.1, 1.6)]
    noise = report.classification_claims(scratch + [row("elmo", 500, 64.0, 1.3), row("elmo", 2000, 73.6, 2.4)])
    assert noise[0].startswith("- **elmo vs scratch: not shown: within the seed spread** (0/2 budgets better, 0 worse")
    assert "(+0.9, within the spread)" in noise[0]
    clear = report.classification_claims(scratch + [row("bert", 500, 67.0, 1.0), row("bert", 2000, 70.0, 1.0)])
    assert clear[0].startswith("- **bert vs scratch: mixed** (1/2 budgets better, 1 worse")
    won = report.classification_claims(scratch + [row("bert", 500, 67.0, 1.0), row("bert", 2000, 76.0, 1.0)])
    assert won[0].startswith("- **bert vs scratch: supported**")
    # one seed (the largest budget): shown without a spread, and said to have none
    single = dict(row("scratch", 8000, 78.3, 0.0), seeds=1), dict(row("elmo", 8000, 79.6, 0.0), seeds=1)
    text = report.classification_claims([*scratch, single[0], row("elmo", 500, 64.0, 1.3), single[1]])[0]
    assert "8000 labels: 79.6 (1 seed) vs 78.3 (1 seed) (+1.3, one seed: no spread to compare with)" in text
    assert "64.0±1.3 vs 63.1±1.4" in text


def test_translation_claims_read_the_numbers():
    rows = [
        {"name": "rnn_none", "model": "rnn", "attention": "none", "bleu": 10.0, "tokens_per_second": 100.0,
         "bleu_by_length": [{"source_words": "1-10", "bleu": 14.0}, {"source_words": ">10", "bleu": 6.0}]},
        {"name": "rnn_dot", "model": "rnn", "attention": "dot", "bleu": 20.0, "tokens_per_second": 90.0,
         "bleu_by_length": [{"source_words": "1-10", "bleu": 22.0}, {"source_words": ">10", "bleu": 18.0}]},
        {"name": "transformer", "model": "transformer", "attention": "multi-head", "bleu": 21.0,
         "tokens_per_second": 180.0, "bleu_by_length": []},
    ]  # fmt: skip
    text = "\n".join(report.translation_claims(rows))
    assert "fixed-vector bottleneck: supported" in text
    assert "gap grows with source length: yes (1-10 words +8.0, >10 words +12.0" in text
    assert "Transformer matches or beats the best attention RNN: supported" in text and "(2.00x)" in text
    tiny = [dict(r, bleu=0.1) for r in rows]
    assert report.translation_claims(tiny)[0].startswith("- **Inconclusive**")


def test_length_trend_reads_every_sentence_with_an_interval(tmp_path):
    """The growth of the attention gap with source length is a slope over all test sentences with a bootstrap
    interval: positive where the no-attention model loses more on long sentences, 'not shown' where it does not."""
    (args,) = report.parse_args(["--config", "recipes/configs/report/smoke.yaml", "--output_dir", str(tmp_path)])
    words = "a man in a blue shirt is standing on a ladder cleaning windows while two dogs run past the red barn"
    words = words.split()
    rng = random.Random(0)

    def write(name, keep):  # keep(n): how many reference words the model gets right for an n-word source
        run = tmp_path / "runs" / "translation" / name
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "test_predictions.jsonl", "w") as f:
            for _ in range(300):
                n = rng.randint(4, len(words))
                reference = " ".join(words[:n])
                f.write(json.dumps({"source": reference, "reference": reference,
                                    "prediction": " ".join(words[: keep(n)])}) + "\n")  # fmt: skip

    rows = [dict(name=n, model="rnn", attention=a, split="test", bleu=b, tokens_per_second=1.0, bleu_by_length=[])
            for n, a, b in (("rnn_none", "none", 9.0), ("rnn_dot", "dot", 20.0))]  # fmt: skip
    rng.seed(0)
    write("rnn_dot", lambda n: n)
    rng.seed(0)  # the same sources for both models
    write("rnn_none", lambda n: min(n, 6))  # a fixed vector holds the first few words only
    trend = report.length_trend(args, rows, resamples=200)
    assert trend["sentences"] == 300 and trend["slope_per_word"] > 0 and trend["ci95"][0] > 0
    assert trend["models"] == ["rnn_dot"]
    text = "\n".join(report.translation_claims(rows, trend))
    assert "The gap grows with source length: yes. Per sentence, the chrF gap changes by +" in text
    assert "300 sentences" in text
    rng.seed(0)
    write("rnn_none", lambda n: n)  # no gap at any length
    flat = report.length_trend(args, rows, resamples=200)
    assert flat["slope_per_word"] == 0 and "not shown (the interval includes 0)" in "\n".join(
        report.translation_claims(rows, flat)
    )
    assert report.length_trend(args, [r for r in rows if r["name"] != "rnn_none"]) is None


def test_the_pretraining_table_names_electra_and_the_recorded_corpus(tmp_path):
    (args,) = report.parse_args(["--config", "recipes/configs/report/smoke.yaml", "--output_dir", str(tmp_path)])
    curve = [
        {"step": s, "eval_accuracy": a, "eval_rtd_accuracy": r, "eval_rtd_recall": c}
        for s, a, r, c in ((0, 0.0, 0.5, 0.4), (100, 0.114, 0.772, 0.031))
    ]
    info = {"config": "x.yaml", "corpus": "my_books/", "task_adaptive": True, "results": {"tokens_seen": 2e6}}
    pretrain = {"bert": {**info, "curve": curve}}
    report.write_report(args, {"pretrain": pretrain})  # args name the demo corpus: the recorded one is shown
    text = (tmp_path / "REPORT.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| bert"))
    assert row.startswith("| bert (ELECTRA) | my_books/ | yes |") and "| 100 | 2.0 M |" in row
    assert "replaced-token accuracy 77.2% (recall 3.1%), generator's masked accuracy 11.4%" in row
    report.plot_pretraining(pretrain, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").stat().st_size > 1000
