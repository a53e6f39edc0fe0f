import os

import pydantic
import pytest
import yaml

from tests.helpers import REPO
from training.config import PretrainConfig, validate_config
from utils.errors import ConfigError

CONFIG_DIR = os.path.join(REPO, "config")


def published_raw() -> dict:
    with open(os.path.join(CONFIG_DIR, "cfg_pretrain.yaml")) as f:
        raw = yaml.safe_load(f)
    with open(os.path.join(CONFIG_DIR, "arch", "hrm_v1.yaml")) as f:
        raw["arch"] = yaml.safe_load(f)
    raw.pop("defaults")
    raw.pop("hydra")
    raw["arch"]["puzzle_emb_ndim"] = raw["arch"]["hidden_size"]  # what the ${.hidden_size} interpolation gives
    raw["data_path"] = "data/arc-aug-1000"  # the YAML names no dataset
    return raw


def test_published_defaults():
    config = validate_config(published_raw())
    assert (config.global_batch_size, config.epochs, config.eval_interval) == (768, 100000, 10000)
    assert config.checkpoint_every_eval is True
    assert (config.lr, config.lr_min_ratio, config.lr_warmup_steps) == (1e-4, 1.0, 2000)
    assert (config.beta1, config.beta2, config.weight_decay) == (0.9, 0.95, 0.1)
    assert (config.puzzle_emb_lr, config.puzzle_emb_weight_decay) == (1e-2, 0.1)
    arch = config.arch
    assert arch.name == "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"
    assert arch.loss.name == "losses@ACTLossHead"
    assert arch.loss.extra == {"loss_type": "stablemax_cross_entropy"}
    assert arch.extra == dict(halt_exploration_prob=0.1, halt_max_steps=16, H_cycles=2, L_cycles=2, H_layers=4,
                              L_layers=4, hidden_size=512, num_heads=8, expansion=4, puzzle_emb_ndim=512,
                              pos_encodings="rope",
                              # Ours, listed so that Hydra overrides them without '+': EqR's noise, off.
                              init_noise=0.0, path_noise=0.0)


def test_yaml_optional_values_equal_field_defaults():
    """The YAML lists optional fields so Hydra can override them without '+'; they must not drift."""
    raw = published_raw()
    published = {"eval_interval", "checkpoint_every_eval", "data_path"}  # set above, or differ from the defaults
    # Not listed, so that both original trainers' `+run_name=...` works (Hydra refuses '+' for a listed key).
    unlisted = {"project_name", "run_name"}
    for name, field in PretrainConfig.model_fields.items():
        if name in unlisted:
            assert name not in raw, name
        elif not field.is_required() and name not in published:
            default = field.default.model_dump() if isinstance(field.default, pydantic.BaseModel) else field.default
            assert raw[name] == default, name


def test_data_path_or_data_paths():
    raw = published_raw()
    config = validate_config(raw)
    assert config.train_data_paths == config.test_data_paths == ["data/arc-aug-1000"]
    raw.update(data_path=None, data_paths=["a", "b"], data_paths_test=["c"])
    config = validate_config(raw)
    assert config.train_data_paths == ["a", "b"] and config.test_data_paths == ["c"]
    raw["data_path"] = "d"
    with pytest.raises(ConfigError, match=r"data_path \(d\) and data_paths \(\['a', 'b'\]\) are both set"):
        validate_config(raw)
    raw.update(data_path=None, data_paths=[])
    with pytest.raises(ConfigError, match="no training data: set data_path="):
        validate_config(raw)


def test_unknown_key_is_named():
    raw = published_raw()
    raw["learning_rate"] = 1.0
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        validate_config(raw)


def test_eval_interval_must_divide_epochs():
    raw = published_raw()
    raw.update(epochs=100, eval_interval=30)
    with pytest.raises(ConfigError, match=r"eval_interval \(30\) must divide epochs \(100\)"):
        validate_config(raw)


def test_global_batch_must_divide_over_ranks():
    raw = published_raw()
    raw["global_batch_size"] = 10
    validate_config(raw, world_size=2)
    with pytest.raises(ConfigError, match=r"global_batch_size \(10\) must be divisible .* \(4\)"):
        validate_config(raw, world_size=4)


def test_bad_value_is_one_line():
    raw = published_raw()
    raw["beta2"] = 1.5
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    assert "\n" not in str(err.value) and str(err.value).startswith("beta2:")


def test_unknown_saved_output_is_rejected():
    raw = published_raw()
    raw["eval_save_outputs"] = ["preds", "logitz"]
    with pytest.raises(ConfigError, match="logitz"):
        validate_config(raw)


def test_max_time_reads_seconds_and_clock_forms():
    from training.config import parse_duration

    assert parse_duration("90") == parse_duration("1:30") == 90.0
    assert parse_duration("00:30:00") == 1800.0 and parse_duration("1:00:00:01") == 86401.0
    for bad in ("half an hour", "1:2:3:4:5", "-5"):
        with pytest.raises(ValueError, match="is not a duration; write seconds or HH:MM:SS"):
            parse_duration(bad)
