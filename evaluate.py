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
from typing import List, Optional

import pydantic

from training.build import create_dataloader, create_evaluators, create_task_codec, create_test_time
from training.config import TestTimeConfig, check_savable_outputs, check_task_name
from training.distributed import close_distributed, init_distributed
from training.evaluation import evaluate, unused_output_prefix
from training.restore import load_trained
from utils.cli import parse_overrides, run_command
from utils.hub import output_prefix


class EvalConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    checkpoint: str = pydantic.Field(description="a step_<N> model file with the run's all_config.yaml beside it, "
                                                 "or hf://OWNER/REPO/FILE")
    data_path: Optional[str] = pydantic.Field(None, description="dataset folder; default: the run's")
    save_outputs: List[str] = pydantic.Field([], description="outputs written to <checkpoint>_all_preds.<rank>")
    global_batch_size: Optional[int] = pydantic.Field(None, gt=0, description="default: the run's")
    device: str = pydantic.Field("auto", description="auto, cpu, cuda, cuda:N, mps")
    compile: Optional[bool] = pydantic.Field(None, description="torch.compile; default: on for CUDA")
    evaluators: Optional[List[dict]] = pydantic.Field(None, description="e.g. [{name: arc@ARC}]; default: the run's")
    test_time: TestTimeConfig = pydantic.Field(TestTimeConfig(), description="test-time compute (docs/DESIGN.md "
                                                                              "§9); default: plain")
    task: Optional[str] = pydantic.Field(None, description="the task of a dataset whose dataset.json names none "
                                                           "(built elsewhere); default: the run's")
    adaptive_halting: bool = pydantic.Field(False, description="also evaluate with each row stopping when its Q "
                                                               "head prefers halting, and compare")

    _known_outputs = pydantic.field_validator("save_outputs")(check_savable_outputs)
    _known_task = pydantic.field_validator("task")(check_task_name)


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
    eval_config = parse_overrides(EvalConfig, argv, __doc__)
    info = init_distributed(eval_config.device)
    try:
        optional = {k: getattr(eval_config, k) for k in ("global_batch_size", "evaluators", "task")
                    if getattr(eval_config, k) is not None}
        run = load_trained(eval_config.checkpoint, info, data_path=eval_config.data_path, device=eval_config.device,
                           compile=eval_config.compile, eval_save_outputs=eval_config.save_outputs,
                           test_time=eval_config.test_time, **optional)
        eval_loader = create_dataloader(run.config, "test", info)
        evaluators = create_evaluators(run.config, eval_loader)
        codec = create_task_codec(run.config, eval_loader)
        test_time = create_test_time(run.config, eval_loader, codec)
        # An hf:// checkpoint's outputs go under checkpoints/hub/; no file this evaluation did not write is replaced.
        prefix = unused_output_prefix(output_prefix(eval_config.checkpoint), info)
        modes = [False, True] if eval_config.adaptive_halting else [False]
        results = {halt_on_q: evaluate(run.model, eval_loader, info, eval_config.save_outputs,
                                       prefix + ("_adaptive" if halt_on_q else ""), evaluators, halt_on_q, test_time,
                                       codec)
                   for halt_on_q in modes}
        if info.rank == 0:
            print(json.dumps(results[False], indent=2))
            if eval_config.adaptive_halting:
                print(halting_comparison(results[False], results[True], eval_loader.metadata.sets))
            if eval_config.save_outputs:
                print("outputs saved to " + ", ".join(f"{prefix}_all_preds.{r}" for r in range(info.world_size)))
        close_distributed(wait_for_all=True)
    finally:
        close_distributed()


if __name__ == "__main__":
    sys.exit(run_command(main))
