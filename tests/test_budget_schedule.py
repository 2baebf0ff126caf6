"""The wall-clock budget schedule: warmup and decay follow the spent share of --max_time_minutes, the elapsed
training time survives a save / resume, and a budget-stopped pretraining run ends at the end of its decay."""

import io
import json
import os

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from tests.conftest import load_recipe
from toolkit.training.arguments import TrainingArguments
from toolkit.training.checkpoint import TrainState
from toolkit.training.loop import training_finished
from toolkit.training.optim import BudgetScheduler, budget_multiplier, create_scheduler, start_training_clock


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def _optimizer(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _scheduler(clock, name="linear", budget_s=100.0, total_steps=10**6, warmup_ratio=0.1, lr=1.0):
    return BudgetScheduler(_optimizer(lr), name, budget_s, total_steps, warmup_ratio=warmup_ratio, clock=clock)


def _step_at(scheduler, clock, t):
    """Advance the fake clock to `t` seconds after the scheduler's start and take one scheduler step."""
    clock.now = scheduler._started + t - scheduler.elapsed_before_s
    scheduler.optimizer.step()
    scheduler.step()
    return scheduler.get_last_lr()[0]


def test_warmup_and_decay_follow_the_spent_budget():
    clock = FakeClock()
    sched = _scheduler(clock)
    assert _step_at(sched, clock, 5.0) == pytest.approx(0.5)  # half of the 10 % warmup
    assert _step_at(sched, clock, 10.0) == pytest.approx(1.0)  # peak at the end of warmup
    assert _step_at(sched, clock, 55.0) == pytest.approx(0.5)  # linear decay over the remaining 90 s
    assert not sched.budget_spent()
    assert _step_at(sched, clock, 100.0) == pytest.approx(0.0)  # the decay ends where the budget ends
    assert sched.budget_spent()
    assert training_finished(TrainState(global_step=3), 10**6, sched)  # the budget stops it, not the step count


def test_the_budget_counts_from_the_start_of_training():
    """Every recipe calls `start_training_clock` just before its loop: data preparation (and the first evaluation)
    before it is not training time, so `training_finished` does not count it."""
    clock = FakeClock()
    sched = _scheduler(clock)
    clock.now += 500.0  # data preparation: five budgets long
    start_training_clock(sched)
    clock.now += 50.0
    sched.optimizer.step()
    sched.step()
    assert sched.time_share == pytest.approx(0.5)
    assert not training_finished(TrainState(global_step=1), 10**6, sched)
    assert training_finished(TrainState(global_step=10), 10, sched)  # the step count still ends it


def test_cosine_and_step_limit():
    assert budget_multiplier("cosine", 0.55, 0.1, step=0, warmup_steps=0) == pytest.approx(0.5)
    clock = FakeClock()
    sched = _scheduler(clock, total_steps=4, warmup_ratio=0.0)
    # the nearer limit drives the schedule: 2 of 4 steps taken after 1 s of a 100 s budget
    _step_at(sched, clock, 0.5)
    assert _step_at(sched, clock, 1.0) == pytest.approx(0.5)


def test_resume_continues_from_the_saved_elapsed_time():
    clock = FakeClock()
    sched = _scheduler(clock)
    _step_at(sched, clock, 40.0)
    state = sched.state_dict()
    assert state["elapsed_before_s"] == pytest.approx(40.0)
    assert "clock" not in state and "optimizer" not in state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == state  # plain data: loads without unpickling code

    later = FakeClock(now=5e6)  # another process, another machine: a different absolute clock
    resumed = _scheduler(later)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == sched.last_epoch
    # 10 more seconds of training after the resume = 50 s of the 100 s budget in all
    assert _step_at(resumed, later, 50.0) == pytest.approx(_lr_linear(50.0))
    later.now += 50.0
    resumed.optimizer.step()
    resumed.step()
    assert resumed.budget_spent() and resumed.get_last_lr()[0] == 0.0


def _lr_linear(t, budget=100.0, warmup=10.0):
    return min(1.0, t / warmup) if t < warmup else (budget - t) / (budget - warmup)


def test_start_excludes_preparation_time():
    clock = FakeClock()
    sched = _scheduler(clock)
    clock.now += 30.0  # data preparation, first evaluation
    sched.start()
    clock.now += 5.0
    sched.optimizer.step()
    sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.5)


def test_create_scheduler_picks_the_clock():
    args = TrainingArguments(max_time_minutes=2.0, warmup_ratio=0.25, lr_scheduler_type="cosine")
    assert isinstance(create_scheduler(_optimizer(), args, 100), BudgetScheduler)
    args = TrainingArguments(warmup_ratio=0.25)
    sched = create_scheduler(_optimizer(), args, 100)
    assert isinstance(sched, LambdaLR) and not isinstance(sched, BudgetScheduler)
    # warmup_ratio of the step count: 25 steps of warmup
    assert sched.lr_lambdas[0](24) == pytest.approx(25 / 26) and sched.lr_lambdas[0](25) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="warmup_ratio"):
        TrainingArguments(warmup_ratio=1.5)
    assert not training_finished(TrainState(global_step=99), 100, sched)  # no budget: only the step count
    assert training_finished(TrainState(global_step=100), 100, sched)


TINY = [
    "--dataset_name", "demo",
    "--dataset_config_name", "corpus",
    "--max_train_samples", "300",
    "--max_eval_samples", "40",
    "--vocab_size", "300",
    "--hidden_size", "32",
    "--num_hidden_layers", "2",
    "--num_attention_heads", "2",
    "--intermediate_size", "64",
    "--max_seq_length", "64",
    "--per_device_train_batch_size", "8",
    "--learning_rate", "3e-3",
    "--logging_steps", "1",
    "--eval_steps", "0",
    "--seed", "3",
]  # fmt: skip


def test_budget_stopped_pretraining_ends_at_the_end_of_its_decay(tmp_path):
    recipe = load_recipe("pretrain_bert")
    out = str(tmp_path / "run")
    argv = [*TINY, "--output_dir", out, "--max_steps", "100000", "--max_time_minutes", "0.1"]
    metrics = recipe.main(*recipe.parse_args([*argv, "--warmup_ratio", "0.2", "--save_steps", "5"]))
    assert 5 < metrics["global_step"] < 100000  # stopped by the 6 s budget, not by max_steps
    with open(os.path.join(out, "log_history.json")) as f:
        lrs = [h["learning_rate"] for h in json.load(f) if "learning_rate" in h]
    peak = max(lrs)
    assert 0.5 * 3e-3 < peak <= 3e-3  # warmed up to (about) the peak
    assert lrs.index(peak) > 0 and lrs[0] < peak  # after a warmup
    assert lrs[-1] <= 0.02 * 3e-3  # and decayed to ~0 when the budget ran out
    # every checkpoint carries the training time spent so far (resume continues the schedule from there)
    ckpt = sorted(os.listdir(os.path.join(out, "checkpoints")))[-1]
    with open(os.path.join(out, "checkpoints", ckpt, "trainer_state.json")) as f:
        step = json.load(f)["global_step"]
    assert 0 < step
