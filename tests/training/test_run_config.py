"""training/run_config.py: a new run's names and folder, the config and sources saved beside its checkpoints, and
the config read back from there."""
import os

import pytest
import yaml

from tests.training.test_build import run_config
from training.checkpoint_files import CheckpointError
from training.run_config import RUN_CONFIG_FILE, load_run_config, name_run, save_code_and_config
from utils.errors import ConfigError


def test_a_new_run_is_named_from_its_data_and_model(tmp_path):
    config = name_run(run_config(tmp_path / "sudoku-extreme-1k/"))
    assert config.project_name == "Sudoku-extreme-1k ACT-torch"
    assert config.run_name.startswith("TinyRecursiveReasoningModel_ACTV1 ")  # + a random two-word slug
    assert config.checkpoint_path == os.path.join("checkpoints", config.project_name, config.run_name)


def test_given_names_are_kept_and_resume_from_a_file_uses_its_folder(tmp_path):
    config = name_run(run_config(tmp_path / "d", project_name="p", run_name="r"))
    assert (config.project_name, config.run_name, config.checkpoint_path) == ("p", "r", os.path.join(
        "checkpoints", "p", "r"))
    resumed = name_run(run_config(tmp_path / "d", resume=str(tmp_path / "old" / "step_9")))
    assert resumed.checkpoint_path == str(tmp_path / "old")


def test_the_config_and_the_model_sources_are_saved_and_read_back(tmp_path):
    config = name_run(run_config(tmp_path / "d", checkpoint_path=str(tmp_path / "run"), ema=True))
    save_code_and_config(config)
    saved = sorted(os.listdir(tmp_path / "run"))
    assert saved == sorted([RUN_CONFIG_FILE, "act.py", "trm.py", "losses.py"])
    with open(tmp_path / "run" / RUN_CONFIG_FILE) as f:
        assert yaml.safe_load(f) == config.model_dump()
    (tmp_path / "run" / "step_1").write_bytes(b"")  # a checkpoint file (only its folder is read here)
    back = load_run_config(str(tmp_path / "run" / "step_1"), 1, data_path="other", eval_save_outputs=["preds"])
    assert back.data_path == "other" and back.eval_save_outputs == ["preds"] and back.ema is True
    assert back.resume is None and back.load_checkpoint is None


def test_fields_of_other_trainer_versions_are_ignored_with_a_note(tmp_path, capsys):
    config = run_config(tmp_path / "d", checkpoint_path=str(tmp_path / "run"))
    os.makedirs(tmp_path / "run")
    with open(tmp_path / "run" / RUN_CONFIG_FILE, "w") as f:
        yaml.safe_dump({**config.model_dump(), "target_q_update_every": 4}, f)
    (tmp_path / "run" / "step_1").write_bytes(b"")
    assert load_run_config(str(tmp_path / "run" / "step_1"), 1).lr == config.lr
    out = capsys.readouterr().out
    assert "ignoring fields" in out and "target_q_update_every" in out


def test_the_checkpoint_and_the_config_beside_it_are_checked_first(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file .*step_1 does not exist"):
        load_run_config(str(tmp_path / "step_1"), 1)
    (tmp_path / "step_1").write_bytes(b"")
    with pytest.raises(ConfigError, match=f"no {RUN_CONFIG_FILE} beside"):
        load_run_config(str(tmp_path / "step_1"), 1)
    with pytest.raises(ConfigError, match=f"checkpoint={tmp_path} is a run folder, not a checkpoint file; give one "
                                          f"of its model files, e.g. checkpoint={tmp_path / 'step_1'}"):
        load_run_config(str(tmp_path), 1)
    for content, what in (("", "is empty"), ("- a\n", "is a list, not a mapping"), ("a: [", "not a readable run")):
        (tmp_path / RUN_CONFIG_FILE).write_text(content)
        with pytest.raises(ConfigError, match=what):
            load_run_config(str(tmp_path / "step_1"), 1)
