"""Train a Hierarchical Reasoning Model (HRM) or a Tiny Recursive Model (TRM).

    python pretrain.py data_path=data/sudoku-extreme-1k-aug-1000 epochs=20000 eval_interval=2000 lr=7e-5
    python pretrain.py arch=trm data_paths="[data/sudoku-extreme-1k-aug-1000]" +run_name=trm-sudoku ema=True
    torchrun --nproc-per-node 8 pretrain.py data_path=...

Config: config/cfg_pretrain.yaml (+ config/arch/*.yaml), validated by training/config.py, whose schema this module
also offers as `from pretrain import PretrainConfig, ArchConfig, LossConfig`. `main` below is the table of
contents; each step lives in the training/ library.
"""
import sys

from typing import Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from training.build import (create_dataloader, create_evaluators, create_task_codec, create_test_time,
                            init_train_state, total_train_steps)
from training.checkpoint_files import CheckpointWriter
from training.checkpointing import restore_train_state, rewind_metrics
from training.config import ArchConfig, LossConfig, PretrainConfig
from training.distributed import close_distributed, init_distributed
from training.loop import Services, train_and_evaluate
from training.preemption import PREEMPTED_EXIT_CODE, Preempted
from training.run_config import (check_command_line, create_logger, load_config, plus_means_set,
                                 save_code_and_config)
from utils.cli import report, run_command

__all__ = ["ArchConfig", "LossConfig", "PretrainConfig", "main"]


def main(hydra_config: DictConfig, job: Optional[int] = None) -> None:
    info = init_distributed(hydra_config.get("device", "auto"))
    services = Services()
    try:
        config = load_config(hydra_config, info, job)
        torch.manual_seed(config.seed + info.rank)

        train_loader = create_dataloader(config, "train", info)
        eval_loader = create_dataloader(config, "test", info)
        state = init_train_state(config, train_loader.metadata, info, total_train_steps(config, train_loader))
        services.writer = CheckpointWriter(config.checkpoint_in_background)
        services.evaluators = create_evaluators(config, eval_loader)
        services.codec = create_task_codec(config, eval_loader)
        services.test_time = create_test_time(config, eval_loader, services.codec)
        wandb_id = restore_train_state(config, state, train_loader, info) if config.resume else None

        if info.rank == 0:
            save_code_and_config(config)
            rewound = config.resume is not None and rewind_metrics(config, state.step)
            services.logger = create_logger(config, wandb_id, rewind_step=state.step if rewound else None)
            print(f"run {config.run_name!r}: {state.schedule.total_steps} steps on {info.device} x{info.world_size}, "
                  f"outputs in {config.checkpoint_path}")
        train_and_evaluate(config, state, train_loader, eval_loader, services, info)
        close_distributed(wait_for_all=True)
    finally:
        if services.logger is not None:
            services.logger.finish()
        close_distributed()


@hydra.main(config_path="config", config_name="cfg_pretrain", version_base=None)
def launch(hydra_config: DictConfig) -> None:
    """`main`, ended as every command ends (utils/cli.py); a preempted run exits with PREEMPTED_EXIT_CODE."""
    hydra = HydraConfig.get()
    job = hydra.job.num if hydra.mode == RunMode.MULTIRUN else None
    try:
        status = run_command(lambda _argv: main(hydra_config, job), argv=[])
    except Preempted as stop:
        report(str(stop))
        status = PREEMPTED_EXIT_CODE
    if status:
        sys.exit(status)


if __name__ == "__main__":
    sys.argv[1:] = plus_means_set(sys.argv[1:])  # +checkpoint_path=... as the original trainers' commands write it
    status = run_command(check_command_line)  # what Hydra itself would refuse, as one line
    if status:
        sys.exit(status)
    launch()
