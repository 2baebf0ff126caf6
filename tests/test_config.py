"""Recipe configuration: YAML defaults, flag overrides, unknown keys rejected with the key and file named."""

from dataclasses import dataclass, field

import pytest

from toolkit.config import parse_args, to_dict
from toolkit.data import DataArguments
from toolkit.errors import UserError
from toolkit.training import TrainingArguments


@dataclass
class ModelArguments:
    hidden_size: int = field(default=32, metadata={"help": "width"})
    objectives: list[str] = field(default_factory=lambda: ["mlm"], metadata={"help": "objectives"})
    init: str = field(default="random", metadata={"help": "init", "choices": ["random", "bilm"]})


def write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_sets_defaults_and_flags_override(tmp_path):
    cfg = write(tmp_path, "learning_rate: 5e-4\nhidden_size: 64\ntrain_file: a.txt\npush_to_hub: false\n")
    model, data, train = parse_args(
        ModelArguments, DataArguments, TrainingArguments, args=["--config", cfg, "--hidden_size", "128"]
    )
    assert model.hidden_size == 128  # flag beats YAML
    assert train.learning_rate == pytest.approx(5e-4)  # YAML's "5e-4" (a string in YAML 1.1) becomes a float
    assert data.train_file == "a.txt"
    assert train.per_device_train_batch_size == 8  # dataclass default
    assert to_dict(model, train)["hidden_size"] == 128


def test_unknown_key_names_key_and_file(tmp_path):
    cfg = write(tmp_path, "learning_rat: 1e-3\n")
    with pytest.raises(UserError, match=r"unknown key 'learning_rat' in config file .*cfg.yaml.*learning_rate"):
        parse_args(ModelArguments, TrainingArguments, args=["--config", cfg])


def test_a_yaml_value_outside_the_choices_is_refused_as_a_flag_would_be(tmp_path):
    assert parse_args(ModelArguments, args=["--config", write(tmp_path, "init: bilm\n")])[0].init == "bilm"
    with pytest.raises(
        UserError, match=r"init in config file .*cfg.yaml must be one of \['random', 'bilm'\], not 'glove'"
    ):
        parse_args(ModelArguments, args=["--config", write(tmp_path, "init: glove\n")])


def test_missing_config_file():
    with pytest.raises(UserError, match="config file nope.yaml does not exist"):
        parse_args(TrainingArguments, args=["--config", "nope.yaml"])


def test_bad_value_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="lr_scheduler_type 'warm' is not one of"):
        parse_args(TrainingArguments, args=["--lr_scheduler_type", "warm"])


def test_list_fields_from_yaml_and_flags(tmp_path):
    cfg = write(tmp_path, "objectives: [mlm, sop]\n")
    (model,) = parse_args(ModelArguments, args=["--config", cfg])
    assert model.objectives == ["mlm", "sop"]
    (model,) = parse_args(ModelArguments, args=["--config", cfg, "--objectives", "mlm"])
    assert model.objectives == ["mlm"]


@dataclass
class SwitchArguments:
    enabled: bool = field(default=True, metadata={"help": "a switch that is on by default"})
    verbose: bool = field(default=False, metadata={"help": "a switch that is off by default"})


def test_explicit_keys_name_what_the_user_set(tmp_path):
    from toolkit.config import explicit_keys

    cfg = write(tmp_path, "learning_rate: 5e-5\nhidden_size: 32\n")  # both equal to their dataclass defaults
    model, switches, train = parse_args(
        ModelArguments, SwitchArguments, TrainingArguments,
        args=["--config", cfg, "--per_device_train_b", "8", "--no_enabled", "--seed=42"],
    )  # fmt: skip
    assert explicit_keys(model) == {"hidden_size"}
    assert explicit_keys(switches) == {"enabled"} and switches.enabled is False
    assert explicit_keys(train) == {"learning_rate", "per_device_train_batch_size", "seed"}
    (train,) = parse_args(TrainingArguments, args=[])
    assert explicit_keys(train) == set()
    train.warmup_steps = 10  # changed in code after parsing: counts as set
    assert explicit_keys(train) == {"warmup_steps"}
    assert explicit_keys(TrainingArguments(learning_rate=1e-3, seed=42)) == {"learning_rate"}  # built in code
