"""A run's config: validated and named for a new run, saved beside its checkpoints, rebuilt from there later."""
import os
import shutil
from typing import List, Optional

import coolname
import torch.distributed as dist
import yaml
from omegaconf import DictConfig, OmegaConf

from training.distributed import DistInfo
from utils import hub
from training.config import PretrainConfig, validate_config
from utils.errors import ConfigError
from utils.functions import get_model_source_paths
from training.run_logger import RunLogger

RUN_CONFIG_FILE = "all_config.yaml"


def load_config(hydra_config: DictConfig, info: DistInfo) -> PretrainConfig:
    """Rank 0 validates the config and fills in the run's names; every rank gets rank 0's result (or error)."""
    objects: List[object] = [None]
    if info.rank == 0:
        try:
            objects = [name_run(validate_config(OmegaConf.to_container(hydra_config, resolve=True),
                                                info.world_size))]
        except ConfigError as err:
            objects = [err]  # sent to every rank, so all stop with the same message instead of waiting
    if info.world_size > 1:
        dist.broadcast_object_list(objects, src=0)
    if isinstance(objects[0], ConfigError):
        raise objects[0]
    return objects[0]


def name_run(config: PretrainConfig) -> PretrainConfig:
    """Project from the (first) data folder, run from the model class and a random slug, folder from both."""
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
    return config


def save_code_and_config(config: PretrainConfig) -> None:
    """all_config.yaml and the model/loss sources beside the checkpoints, to know later what was trained."""
    os.makedirs(config.checkpoint_path, exist_ok=True)
    for identifier in (config.arch.name, config.arch.loss.name):
        for path in get_model_source_paths(identifier):
            shutil.copy(path, config.checkpoint_path)
    with open(os.path.join(config.checkpoint_path, RUN_CONFIG_FILE), "w", encoding="utf-8") as f:
        yaml.safe_dump(config.model_dump(), f, sort_keys=False)


def create_logger(config: PretrainConfig, wandb_id: Optional[str] = None, rewind_step: Optional[int] = None
                  ) -> RunLogger:
    """Rank 0's metric sink: metrics.jsonl in the run folder, plus W&B unless logger=none (continuing run
    `wandb_id`, rewound to `rewind_step` if given); curves.png (train/eval loss and accuracy) is re-drawn at every
    evaluation and at the end."""
    return RunLogger(config.checkpoint_path, project=config.project_name, run_name=config.run_name,
                     config=config.model_dump(), use_wandb=config.logger == "wandb", resume_id=wandb_id,
                     rewind_step=rewind_step, plot=True)


def load_run_config(checkpoint: str, world_size: int, data_path: Optional[str] = None, **overrides) -> PretrainConfig:
    """The training config saved beside `checkpoint` (ours or a published HRM/TRM run's), for using the checkpoint
    rather than continuing its training: no resume, no weights to load; `data_path` replaces the run's datasets,
    other keyword arguments replace config fields. An hf://OWNER/REPO/FILE checkpoint is downloaded with the
    all_config.yaml beside it in the repository."""
    local_checkpoint = hub.resolve(checkpoint, beside=(RUN_CONFIG_FILE,))
    config_path = os.path.join(os.path.dirname(os.path.abspath(local_checkpoint)), RUN_CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ConfigError(f"no {RUN_CONFIG_FILE} beside {checkpoint}; the run is rebuilt from it (copy the "
                          f"training run's {RUN_CONFIG_FILE} there)")
    with open(config_path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    # Configs of other trainer versions may carry fields this one does not know; they do not affect evaluation.
    unknown = sorted(set(raw) - set(PretrainConfig.model_fields))
    if unknown:
        print(f"note: ignoring fields of {config_path} unknown to this trainer: {', '.join(unknown)}")
    raw = {k: v for k, v in raw.items() if k in PretrainConfig.model_fields}
    raw.update(load_checkpoint=None, resume=None)
    if data_path is not None:
        raw.update(data_path=data_path, data_paths=[], data_paths_test=[])
    raw.update(overrides)
    return validate_config(raw, world_size)
