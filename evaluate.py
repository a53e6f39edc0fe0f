"""Evaluate a checkpoint on a dataset's test split, print the metrics, and save outputs.

    python evaluate.py checkpoint=checkpoints/<project>/<run>/step_1000
    python evaluate.py checkpoint=.../step_1000 data_path=data/sudoku-extreme-full save_outputs=[preds,q_halt_logits]
    python evaluate.py checkpoint=.../step_1000 adaptive_halting=true    # also stop rows when their Q head says so
    python evaluate.py checkpoint=.../step_1000 'evaluators=[{name: arc@ARC}]'
    torchrun --nproc-per-node 8 evaluate.py checkpoint=...

The run is rebuilt from the all_config.yaml beside the checkpoint (ours or a published HRM checkpoint's); the
checkpoint file is a model state dict, with or without torch.compile's `_orig_mod.` key prefix.
"""
import json
import os
import sys
import time
from typing import List, Optional

import pydantic
import torch.distributed as dist
import yaml
from omegaconf import OmegaConf

from dataset.puzzle_dataset import load_metadata
from pretrain import USER_ERRORS, create_dataloader, create_evaluators, create_model, evaluate, init_distributed
from utils.checkpoint import load_model_state_dict, load_weights
from utils.config import (ConfigError, PretrainConfig, check_savable_outputs, format_validation_error,
                          validate_config)


class EvalConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    checkpoint: str
    data_path: Optional[str] = None          # default: the one the run was trained on
    save_outputs: List[str] = []              # written beside the checkpoint: <checkpoint>_all_preds.<rank>
    global_batch_size: Optional[int] = pydantic.Field(None, gt=0)  # default: the run's
    device: str = "auto"
    compile: Optional[bool] = None
    evaluators: Optional[List[dict]] = None   # default: the run's
    # Also evaluate with adaptive halting (each row stops when its Q head prefers halting) and compare segments
    # used, accuracy and wall time with always running halt_max_steps.
    adaptive_halting: bool = False

    _known_outputs = pydantic.field_validator("save_outputs")(check_savable_outputs)


def parse_args(argv: List[str]) -> EvalConfig:
    try:
        return EvalConfig(**OmegaConf.to_container(OmegaConf.from_cli(argv), resolve=True))
    except pydantic.ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def load_run_config(eval_config: EvalConfig, world_size: int) -> PretrainConfig:
    """The training config saved beside the checkpoint, with this evaluation's overrides."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(eval_config.checkpoint)), "all_config.yaml")
    if not os.path.isfile(config_path):
        raise ConfigError(f"no all_config.yaml beside {eval_config.checkpoint}; evaluate.py rebuilds the run "
                          f"from it (copy the training run's all_config.yaml there)")
    with open(config_path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    # Configs of other trainer versions may carry fields this one does not know; they do not affect evaluation.
    unknown = sorted(set(raw) - set(PretrainConfig.model_fields))
    if unknown:
        print(f"note: ignoring fields of {config_path} unknown to this trainer: {', '.join(unknown)}")
    raw = {k: v for k, v in raw.items() if k in PretrainConfig.model_fields}
    raw.update(device=eval_config.device, compile=eval_config.compile, load_checkpoint=None, resume=None,
               eval_save_outputs=eval_config.save_outputs)
    if eval_config.data_path is not None:
        raw["data_path"] = eval_config.data_path
    if eval_config.global_batch_size is not None:
        raw["global_batch_size"] = eval_config.global_batch_size
    if eval_config.evaluators is not None:
        raw["evaluators"] = eval_config.evaluators
    return validate_config(raw, world_size)


def halting_comparison(fixed: dict, adaptive: dict, sets: List[str]) -> str:
    """A small table: segments used, accuracy and wall time, always-max-steps vs adaptive halting."""
    lines = [f"{'halting':<10} {'set':<12} {'segments':>9} {'accuracy':>9} {'exact':>7} {'wall s':>8}"]
    for name, metrics in (("fixed", fixed), ("adaptive", adaptive)):
        for set_name in sets:
            get = lambda key: metrics.get(f"eval/{set_name}/{key}", float("nan"))  # noqa: E731
            lines.append(f"{name:<10} {set_name:<12} {get('steps'):>9.2f} {get('accuracy'):>9.4f} "
                         f"{get('exact_accuracy'):>7.4f} {metrics['wall_time_s']:>8.2f}")
    return "\n".join(lines)


def main(argv: List[str]) -> None:
    eval_config = parse_args(argv)
    info = init_distributed(eval_config.device)
    try:
        config = load_run_config(eval_config, info.world_size)
        # Model sizes come from the dataset's metadata files; no training loader is built.
        metadata = load_metadata(config.data_path, "train" if os.path.isdir(
            os.path.join(config.data_path, "train")) else "test")
        eval_loader = create_dataloader(config, "test", info)
        model, forward = create_model(config, metadata, info)
        load_weights(model, load_model_state_dict(eval_config.checkpoint), eval_config.checkpoint)

        evaluators = create_evaluators(config, eval_loader.metadata)
        prefix = os.path.abspath(eval_config.checkpoint)
        modes = [False, True] if eval_config.adaptive_halting else [False]
        results = {}
        for halt_on_q in modes:
            start = time.perf_counter()
            results[halt_on_q] = evaluate(model, forward, eval_loader, info, eval_config.save_outputs,
                                          prefix + ("_adaptive" if halt_on_q else ""), evaluators, halt_on_q)
            results[halt_on_q]["wall_time_s"] = time.perf_counter() - start
        if info.rank == 0:
            print(json.dumps(results[False], indent=2))
            if eval_config.adaptive_halting:
                print(halting_comparison(results[False], results[True], eval_loader.metadata.sets))
            if eval_config.save_outputs:
                print(f"outputs saved to {prefix}_all_preds.<rank>")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
