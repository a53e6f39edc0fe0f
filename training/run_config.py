"""A run's config and folder: validated and named for a new run, its folder claimed (one run per folder), saved
beside its checkpoints, and rebuilt from there later."""
import itertools
import os
import re
import shutil
from typing import List, Optional

import coolname
import yaml
from omegaconf import DictConfig, OmegaConf

from models.registry import model_source_files
from training.checkpoint_files import CheckpointError, list_checkpoints
from training.config import PretrainConfig, validate_config
from training.distributed import DistInfo, on_rank_zero
from training.run_logger import METRICS_FILE, RunLogger
from utils import hub
from utils.errors import ConfigError

RUN_CONFIG_FILE = "all_config.yaml"
# What a run leaves in its folder that another run must not write over: checkpoints and their outputs, metrics,
# the run's config.
_RUN_FILE = re.compile(rf"^(step_\d+.*|{re.escape(METRICS_FILE)}|{re.escape(RUN_CONFIG_FILE)})$")


def load_config(hydra_config: DictConfig, info: DistInfo, job: Optional[int] = None) -> PretrainConfig:
    """Rank 0 validates the config, fills in the run's names and claims its folder; every rank gets rank 0's
    result (or error). `job`: the job number of a Hydra multirun (every job gets its own folder)."""
    def named_and_claimed() -> PretrainConfig:
        config = name_run(validate_config(OmegaConf.to_container(hydra_config, resolve=True), info.world_size), job)
        claim_run_folder(config)
        return config

    return on_rank_zero(info, named_and_claimed)


CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config")
_NAME_FLAGS = ("--config-name", "-cn")


def plus_means_set(argv: List[str]) -> List[str]:
    """The original trainers' commands write `+key=value` for keys our config already lists (HRM's and TRM's
    `+run_name=`, URM's `+checkpoint_path=` and `+ema=True`), which Hydra refuses ("already at"): they are read as
    `++key=value`, set or add."""
    return ["+" + arg if arg.startswith("+") and not arg.startswith("++") and "=" in arg else arg for arg in argv]


def check_command_line(argv: List[str]) -> None:
    """pretrain.py's overrides composed once before Hydra runs, so that what Hydra itself refuses (a key that is not
    in the config, written without `+`; a malformed override) is one ConfigError line, not Hydra's report. Command
    lines with other Hydra flags (multirun, --help, --cfg...) are left to Hydra."""
    config_name, overrides, args = "cfg_pretrain", [], list(argv)
    while args:
        arg = args.pop(0)
        if arg in _NAME_FLAGS and args:
            config_name = args.pop(0)
        elif arg.startswith("--config-name="):
            config_name = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            return
        else:
            overrides.append(arg)
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            compose(config_name, overrides=overrides)
    except HydraException as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        hint = lines[1:2] if len(lines) > 1 and lines[1].startswith("To ") else []  # "To append ... use +key="
        raise ConfigError(" ".join(lines[:1] + hint)) from None


def name_run(config: PretrainConfig, job: Optional[int] = None) -> PretrainConfig:
    """Project from the (first) data folder, run from the model class and a random slug, folder from both; the
    folder of job N of a multirun gets `-N` appended."""
    if config.project_name is None:
        first = config.train_data_paths[0]
        config.project_name = f"{os.path.basename(first.rstrip('/')).capitalize()} ACT-torch"
    if config.run_name is None:
        config.run_name = f"{config.arch.name.split('@')[-1]} {coolname.generate_slug(2)}"
    if config.checkpoint_path is None:
        if config.resume is not None and config.resume != "latest":  # continue in that checkpoint's folder
            config.checkpoint_path = os.path.dirname(os.path.abspath(config.resume))
        else:
            config.checkpoint_path = os.path.join("checkpoints", config.project_name, config.run_name)
    if job is not None:
        config.checkpoint_path = f"{config.checkpoint_path.rstrip(os.sep)}-{job}"
    return config


def check_output_folder(folder: str, key: str = "checkpoint_path") -> None:
    """A folder this run can create and write into, checked by making it (and removing what was made), so that a
    bad path stops the run before anything is built or written."""
    path = os.path.abspath(folder)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ConfigError(f"{key}={folder} is a file, not a folder; choose another {key}")
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{key}={folder}: this user may not write into it; choose another {key}")
        return
    made, parent = [], path
    while not os.path.exists(parent):
        made.append(parent)
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{key}={folder}: {parent} is a file, so no folder can be made under it; choose another "
                          f"{key}")
    try:
        os.makedirs(path)
    except OSError as err:
        raise ConfigError(f"{key}={folder}: cannot create this folder ({err.strerror}); choose another "
                          f"{key}") from None
    for created in made:  # the run creates it when it first writes
        os.rmdir(created)


def claim_run_folder(config: PretrainConfig) -> None:
    """A new run's folder must not hold another run's files (checkpoints, metrics, config): it stops, naming the
    ways on, or with overwrite=true the old folder is moved aside to <folder>.replaced-<n> (never deleted). A
    resumed run continues its own folder."""
    folder = config.checkpoint_path
    check_output_folder(folder)
    if config.resume is not None or not os.path.isdir(folder):
        return
    found = sorted(name for name in os.listdir(folder) if _RUN_FILE.match(name))
    if not found:
        return
    if not config.overwrite:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise ConfigError(f"{folder} already holds another run ({shown}): continue it with resume=latest, start "
                          f"this one elsewhere with another checkpoint_path= (or +run_name=), or move the old "
                          f"files aside with overwrite=true")
    aside = next(f"{folder.rstrip(os.sep)}.replaced-{n}" for n in itertools.count(1)
                 if not os.path.exists(f"{folder.rstrip(os.sep)}.replaced-{n}"))
    os.rename(folder, aside)
    print(f"note: {folder} held another run; its files are now in {aside}")


def save_code_and_config(config: PretrainConfig) -> None:
    """all_config.yaml and the model/loss sources beside the checkpoints, to know later what was trained."""
    os.makedirs(config.checkpoint_path, exist_ok=True)
    for identifier in (config.arch.name, config.arch.loss.name):
        for path in model_source_files(identifier):
            shutil.copy(path, config.checkpoint_path)
    with open(os.path.join(config.checkpoint_path, RUN_CONFIG_FILE), "w", encoding="utf-8") as f:
        yaml.safe_dump(config.model_dump(), f, sort_keys=False)


def create_logger(config: PretrainConfig, wandb_id: Optional[str] = None, rewind_step: Optional[int] = None
                  ) -> RunLogger:
    """Rank 0's metric sink: metrics.jsonl in the run folder, plus W&B unless logger=none (continuing run
    `wandb_id`, rewound to `rewind_step` if given); curves.png (train/eval loss and accuracy) is re-drawn after an
    evaluation (at most every run_logger.PLOT_EVERY_S seconds) and at the end."""
    return RunLogger(config.checkpoint_path, project=config.project_name, run_name=config.run_name,
                     config=config.model_dump(), use_wandb=config.logger == "wandb", resume_id=wandb_id,
                     rewind_step=rewind_step, plot=True)


def load_run_config(checkpoint: str, world_size: int, data_path: Optional[str] = None, keep_optimizer: bool = False,
                    **overrides) -> PretrainConfig:
    """The training config saved beside `checkpoint` (ours or a published HRM/TRM run's), for using the checkpoint
    rather than continuing its training: no resume, no weights to load; `data_path` replaces the run's datasets,
    other keyword arguments replace config fields; `keep_optimizer` keeps the run's optimizer choice (use_muon,
    for a caller that trains the weights further). An hf://OWNER/REPO/FILE checkpoint is downloaded with the
    all_config.yaml beside it in the repository."""
    if not hub.is_hub_reference(checkpoint):
        if os.path.isdir(checkpoint):
            steps = list_checkpoints(checkpoint)
            example = steps[0][1] if steps else os.path.join(checkpoint, "step_<N>")
            raise ConfigError(f"checkpoint={checkpoint} is a run folder, not a checkpoint file; give one of its model "
                              f"files, e.g. checkpoint={example}")
        if not os.path.isfile(checkpoint):
            raise CheckpointError(f"checkpoint file {checkpoint} does not exist")
    local_checkpoint = hub.resolve(checkpoint, beside=(RUN_CONFIG_FILE,))
    config = run_config_beside(local_checkpoint, world_size, data_path, keep_optimizer, **overrides)
    if config is None:
        raise ConfigError(f"no {RUN_CONFIG_FILE} beside {checkpoint}; the run is rebuilt from it (copy the "
                          f"training run's {RUN_CONFIG_FILE} there)")
    return config


def run_config_beside(path: str, world_size: int, data_path: Optional[str] = None, keep_optimizer: bool = False,
                      **overrides) -> Optional[PretrainConfig]:
    """The run config in the all_config.yaml beside `path` (a checkpoint, or outputs saved beside it), as
    load_run_config gives it; None when there is none."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), RUN_CONFIG_FILE)
    if not os.path.isfile(config_path):
        return None
    raw = read_run_config_file(config_path)
    # Configs of other trainer versions may carry fields this one does not know; they do not affect evaluation.
    unknown = sorted(set(raw) - set(PretrainConfig.model_fields))
    if unknown:
        print(f"note: ignoring fields of {config_path} unknown to this trainer: {', '.join(unknown)}")
    raw = {k: v for k, v in raw.items() if k in PretrainConfig.model_fields}
    # Micro-batching and the optimizer choice shape training steps only; a caller that answers starts from one
    # batch per step and no optimizer.
    raw.update(load_checkpoint=None, resume=None, grad_accum_steps=1)
    if not keep_optimizer:
        raw.update(use_muon=False)
    if data_path is not None:
        raw.update(data_path=data_path, data_paths=[], data_paths_test=[])
    raw.update(overrides)
    return validate_config(raw, world_size)


def read_run_config_file(path: str) -> dict:
    """A saved run config (all_config.yaml) as a mapping; a file that is not one is a ConfigError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path} is not a readable run config ({first}); copy the training run's "
                          f"{RUN_CONFIG_FILE} there") from None
    if not isinstance(raw, dict):
        what = "empty" if raw is None else f"a {type(raw).__name__}, not a mapping of config keys"
        raise ConfigError(f"{path} is {what}; copy the training run's {RUN_CONFIG_FILE} there")
    return raw
