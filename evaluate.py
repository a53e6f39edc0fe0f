"""Evaluate a checkpoint on a dataset's test split, print the metrics, and save outputs.

    python evaluate.py checkpoint=checkpoints/<project>/<run>/step_1000
    python evaluate.py checkpoint=.../step_1000 data_path=data/sudoku-extreme-full save_outputs=[preds,q_halt_logits]
    python evaluate.py checkpoint=.../step_1000 adaptive_halting=true    # also stop rows when their Q head says so
    python evaluate.py checkpoint=.../step_1000 'evaluators=[{name: arc@ARC}]'
    python evaluate.py checkpoint=.../step_1000 test_time.augmentations=8 test_time.segments=32   # test-time compute
    torchrun --nproc-per-node 8 evaluate.py checkpoint=...

The run is rebuilt from the all_config.yaml beside the checkpoint (ours or a published HRM/TRM checkpoint's); the
checkpoint file is a model state dict, with or without torch.compile's `_orig_mod.` key prefix.
"""
import json
import sys
from typing import Any, Dict, List, Optional

import pydantic
from omegaconf import OmegaConf

from training.build import create_dataloader, create_evaluators, create_model, create_test_time, training_metadata
from training.distributed import close_distributed, init_distributed
from training.errors import USER_ERRORS
from training.evaluation import evaluate
from training.run_config import load_run_config
from utils.checkpoint import load_model_state_dict, load_weights
from utils.config import ConfigError, check_savable_outputs, format_validation_error
from utils.hub import output_prefix


class EvalConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    checkpoint: str
    data_path: Optional[str] = None          # default: the one(s) the run was trained on
    save_outputs: List[str] = []              # written beside the checkpoint: <checkpoint>_all_preds.<rank>
    global_batch_size: Optional[int] = pydantic.Field(None, gt=0)  # default: the run's
    device: str = "auto"
    compile: Optional[bool] = None
    evaluators: Optional[List[dict]] = None   # default: the run's
    test_time: Dict[str, Any] = {}            # test-time compute (utils/config.py TestTimeConfig); default: plain
    # Also evaluate with adaptive halting (each row stops when its Q head prefers halting) and compare segments
    # used, accuracy and wall time with always running halt_max_steps.
    adaptive_halting: bool = False

    _known_outputs = pydantic.field_validator("save_outputs")(check_savable_outputs)


def parse_args(argv: List[str]) -> EvalConfig:
    try:
        return EvalConfig(**OmegaConf.to_container(OmegaConf.from_cli(argv), resolve=True))
    except pydantic.ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


def halting_comparison(fixed: dict, adaptive: dict, sets: List[str]) -> str:
    """A small table: segments used, accuracy and wall time, always-max-steps vs adaptive halting."""
    lines = [f"{'halting':<10} {'set':<12} {'segments':>9} {'accuracy':>9} {'exact':>7} {'wall s':>8}"]
    for name, metrics in (("fixed", fixed), ("adaptive", adaptive)):
        for set_name in sets:
            get = lambda key: metrics.get(f"eval/{set_name}/{key}", float("nan"))  # noqa: E731
            lines.append(f"{name:<10} {set_name:<12} {get('steps'):>9.2f} {get('accuracy'):>9.4f} "
                         f"{get('exact_accuracy'):>7.4f} {metrics['eval/wall_time_s']:>8.2f}")
    return "\n".join(lines)


def main(argv: List[str]) -> None:
    eval_config = parse_args(argv)
    info = init_distributed(eval_config.device)
    try:
        optional = {k: getattr(eval_config, k) for k in ("global_batch_size", "evaluators")
                    if getattr(eval_config, k) is not None}
        config = load_run_config(eval_config.checkpoint, info.world_size, data_path=eval_config.data_path,
                                 device=eval_config.device, compile=eval_config.compile,
                                 eval_save_outputs=eval_config.save_outputs, test_time=eval_config.test_time,
                                 **optional)
        eval_loader = create_dataloader(config, "test", info)
        model, forward = create_model(config, training_metadata(config), info)  # no training loader is built
        load_weights(model, load_model_state_dict(eval_config.checkpoint), eval_config.checkpoint)

        evaluators = create_evaluators(config, eval_loader)
        test_time = create_test_time(config, eval_loader)
        prefix = output_prefix(eval_config.checkpoint)  # an hf:// checkpoint's outputs go under checkpoints/hub/
        modes = [False, True] if eval_config.adaptive_halting else [False]
        results = {halt_on_q: evaluate(model, forward, eval_loader, info, eval_config.save_outputs,
                                       prefix + ("_adaptive" if halt_on_q else ""), evaluators, halt_on_q, test_time)
                   for halt_on_q in modes}
        if info.rank == 0:
            print(json.dumps(results[False], indent=2))
            if eval_config.adaptive_halting:
                print(halting_comparison(results[False], results[True], eval_loader.metadata.sets))
            if eval_config.save_outputs:
                print(f"outputs saved to {prefix}_all_preds.<rank>")
    finally:
        close_distributed()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
