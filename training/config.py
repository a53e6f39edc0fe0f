"""The typed, strict configuration tree of a training run (pretrain.py; docs/DESIGN.md, "Configuration").

Unknown keys are errors (extra="forbid"), except under `arch` and `arch.loss`, whose extra keys belong to the
model's and the loss head's own configs and are checked there. Cross-field rules live here as validators, with
messages that say what to change. Defaults of the published setting live in config/*.yaml; the defaults below
are those of optional fields.
"""
from typing import List, Literal, Optional

import pydantic

from tasks import task_names
from utils.cli import validate

# Keys a training/eval step can return for saving (model outputs, plus the batch itself).
SAVABLE_OUTPUTS = ("inputs", "labels", "puzzle_identifiers", "logits", "preds", "q_halt_logits",
                   "q_continue_logits")


def check_savable_outputs(keys: List[str]) -> List[str]:
    """Validator for lists of output names to save."""
    unknown = sorted(set(keys) - set(SAVABLE_OUTPUTS))
    if unknown:
        raise ValueError(f"unknown output(s) {unknown}; choose from {list(SAVABLE_OUTPUTS)}")
    return keys


def parse_duration(text: str) -> float:
    """Seconds of "SS", "MM:SS", "HH:MM:SS" or "DD:HH:MM:SS" (Lightning's max_time form)."""
    parts = text.strip().split(":")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise ValueError(f"{text!r} is not a duration; write seconds or HH:MM:SS (e.g. max_time=00:30:00)") from None
    if len(values) > 4 or any(v < 0 for v in values):
        raise ValueError(f"{text!r} is not a duration; write seconds or HH:MM:SS (e.g. max_time=00:30:00)")
    seconds = 0.0
    for value, unit in zip(reversed(values), (1, 60, 3600, 86400)):
        seconds += value * unit
    return seconds


def check_task_name(name: Optional[str]) -> Optional[str]:
    """Validator for a task name (a folder of tasks/)."""
    if name is not None and name not in task_names():
        raise ValueError(f"no task {name!r}; the tasks are {', '.join(task_names())}")
    return name


class _NamedWithExtras(pydantic.BaseModel):
    """A "module@Class" name whose other keys belong to that class's own config (checked there, not here)."""

    model_config = pydantic.ConfigDict(extra="allow")

    name: str

    @property
    def extra(self) -> dict:
        return dict(self.__pydantic_extra__ or {})


class LossConfig(_NamedWithExtras):
    """The loss head, e.g. losses@ACTLossHead; extra keys (loss_type) go to its constructor."""


class ArchConfig(_NamedWithExtras):
    """The model, e.g. hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1; extra keys go to its config."""

    loss: LossConfig


class EvaluatorConfig(_NamedWithExtras):
    """An evaluator run at every evaluation, "module@Class" under evaluators/; extra keys go to its constructor."""


SELECTORS = ("vote", "q", "converged", "valid")


class TestTimeConfig(pydantic.BaseModel):
    """Test-time compute at evaluation (docs/DESIGN.md §9; training/test_time.py): more depth than trained (more
    segments, more cycles per segment), and breadth (every test puzzle run as augmentations x trajectories variants
    in one batch) with a selector that picks one answer per puzzle. The defaults are plain evaluation."""

    model_config = pydantic.ConfigDict(extra="forbid")

    # Depth. segments: ACT segments at evaluation (None = the model's limit; more runs deeper than trained).
    # cycles_scale: each segment runs k x the core's trained cycles (H_cycles). halting: "never" runs every row
    # for all its segments; "q" stops each row when its Q head says halt (adaptive halting).
    segments: Optional[int] = pydantic.Field(None, gt=0)
    cycles_scale: int = pydantic.Field(1, ge=1)
    halting: Literal["never", "q"] = "never"
    # A: random members of the task's symmetry group per puzzle (the first is the identity); answers are mapped
    # back to the puzzle's frame before they are compared.
    augmentations: int = pydantic.Field(1, ge=1)
    augmentation_kinds: Optional[List[str]] = None  # the group members drawn from; None = all the task has
    # K: runs per augmentation with Gaussian noise of std noise_std added to the core's noise state, at the
    # initial state ("init") or before every segment ("segment").
    trajectories: int = pydantic.Field(1, ge=1)
    noise_std: float = pydantic.Field(0.0, ge=0)
    noise_at: Literal["init", "segment"] = "init"
    # The selector, criteria in order (the first decides, the next break its ties): "vote" (most variants with
    # the answer, then their highest mean sigmoid(q_halt)), "q" (the variant of highest q_halt; PTRM's), "converged"
    # (the variant whose latent changed least in its last segment: nearest a fixed point), "valid" (first only:
    # drop the answers that fail the task's check, unless every one fails). "q_halt" is q's earlier name.
    select: List[Literal["vote", "q", "converged", "valid"]] = ["vote"]
    filter_invalid: bool = False  # the same as select starting with "valid"

    @pydantic.field_validator("select", mode="before")
    @classmethod
    def _criteria(cls, value):
        value = [value] if isinstance(value, str) else list(value)
        return ["q" if criterion == "q_halt" else criterion for criterion in value]

    @pydantic.model_validator(mode="after")
    def _checks(self):
        if self.trajectories > 1 and self.noise_std == 0:
            raise ValueError(f"trajectories={self.trajectories} with noise_std=0 runs the same trajectory "
                             f"{self.trajectories} times; set test_time.noise_std > 0 (e.g. 0.3) or trajectories=1")
        if not self.select or len(set(self.select)) != len(self.select):
            raise ValueError(f"select={self.select}: name one or more of {', '.join(SELECTORS)}, each once")
        if "valid" in self.select[1:]:
            raise ValueError(f"select={self.select}: valid drops the answers that fail the check, so it comes "
                             f"first (e.g. select=[valid,q])")
        return self

    @property
    def filters(self) -> bool:
        """Whether answers that fail the task's check are dropped (select starting with valid, or filter_invalid)."""
        return self.filter_invalid or self.select[0] == "valid"

    @property
    def ranking(self) -> List[str]:
        """The criteria that rank the answers left (valid aside); vote when valid alone is given."""
        return [criterion for criterion in self.select if criterion != "valid"] or ["vote"]

    @property
    def variants(self) -> int:
        return self.augmentations * self.trajectories

    @property
    def plain(self) -> bool:
        return self == TestTimeConfig()


def eval_batch_size(global_batch_size: int, variants: int, world_size: int) -> int:
    """The global batch of evaluation: puzzles x variants rows stay within the training batch's rows (memory
    stays bounded), a multiple of the number of processes, at least one puzzle per process."""
    return max(world_size, global_batch_size // variants // world_size * world_size)


class PretrainConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    arch: ArchConfig
    # The training data: one dataset folder (HRM's data_path) or several trained as one (TRM's data_paths);
    # evaluation uses data_paths_test when given, else the same folders (their test splits).
    data_path: Optional[str] = None
    data_paths: List[str] = []
    data_paths_test: List[str] = []

    # Hyperparameters (published values in config/cfg_pretrain.yaml).
    global_batch_size: int = pydantic.Field(gt=0)
    epochs: int = pydantic.Field(gt=0)
    lr: float = pydantic.Field(ge=0)
    lr_min_ratio: float = pydantic.Field(ge=0, le=1)
    lr_warmup_steps: int = pydantic.Field(ge=0)
    weight_decay: float = pydantic.Field(ge=0)
    beta1: float = pydantic.Field(ge=0, lt=1)
    beta2: float = pydantic.Field(ge=0, lt=1)
    puzzle_emb_lr: float = pydantic.Field(ge=0)
    puzzle_emb_weight_decay: float = pydantic.Field(ge=0)

    # Names, filled in by the trainer when left empty: project from the data folder, run from the model
    # class and a random slug; checkpoints go to checkpoints/<project>/<run>.
    project_name: Optional[str] = None
    run_name: Optional[str] = None
    checkpoint_path: Optional[str] = None
    # A new run into a folder that holds another run's files: move those aside to <folder>.replaced-<n> (never
    # deleted) instead of stopping.
    overwrite: bool = False

    seed: int = 0
    checkpoint_every_eval: bool = False
    eval_interval: Optional[int] = pydantic.Field(None, gt=0)  # in epochs; None = evaluate once, at the end
    # Budgets that stop the run early, the schedule staying that of `epochs`: at the first step that reaches one, a
    # final evaluation and a checkpoint, which resume=latest continues (to where an uninterrupted run ends).
    # max_steps: the run's optimizer steps; max_time: wall time of this process's training, in seconds, or
    # "HH:MM:SS" / "DD:HH:MM:SS" on the command line.
    max_steps: Optional[int] = pydantic.Field(None, gt=0)
    max_time: Optional[float] = pydantic.Field(None, gt=0)
    # Blocks of eval_interval epochs trained before the first evaluation (TRM's name): blocks 0..N-1 skip it.
    min_eval_interval: int = pydantic.Field(0, ge=0)
    eval_save_outputs: List[str] = []
    evaluators: List[EvaluatorConfig] = []  # e.g. [{name: arc@ARC}]: task metrics such as ARC pass@K
    # The task of datasets whose dataset.json does not name one (built elsewhere); this project's builders name it.
    task: Optional[str] = None
    test_time: TestTimeConfig = TestTimeConfig()  # augmentation voting, latent-noise trajectories, more segments

    # Additions to the original trainer.
    device: str = "auto"             # auto (CUDA if available, else CPU), cpu, cuda, cuda:N, mps
    compile: Optional[bool] = None   # torch.compile the model; None = on for CUDA, off elsewhere
    logger: Literal["wandb", "none"] = "wandb"  # metrics always also go to <checkpoint_path>/metrics.jsonl
    load_checkpoint: Optional[str] = None  # initialise the weights from a model state dict (e.g. published)
    # With load_checkpoint (URM's names): every key must match (else missing and unexpected keys are listed and
    # skipped); and a checkpoint of URM's trainer that holds optimizer states gives them to this run's optimizers.
    load_strict: bool = True
    load_optimizer_state: bool = True
    resume: Optional[str] = None     # "latest" (newest intact checkpoint in checkpoint_path) or a step_<N> path
    checkpoint_interval: Optional[int] = pydantic.Field(None, gt=0)  # also checkpoint every N steps
    checkpoint_keep_last: Optional[int] = pydantic.Field(None, gt=0)  # delete older checkpoints; None keeps all
    # Full training states (.state, .rank<r>: what resuming needs) kept, newest first; older checkpoints keep
    # their model file only. At ARC scale a training state is ~1.6 GB.
    checkpoint_keep_states: int = pydantic.Field(2, gt=0)
    # Write checkpoints on a background thread from a CPU copy, so training goes on while the files are written.
    checkpoint_in_background: bool = True
    ema: bool = False                # evaluate and save an exponential moving average of the weights
    ema_rate: float = pydantic.Field(0.999, gt=0, lt=1)
    # Train only the puzzle embeddings (TRM's name): dense weights get no gradient and no optimizer.
    freeze_weights: bool = False
    # URM's ARC-AGI-2 optimizer: every 2-D dense weight through Muon, the other dense ones through AdamW
    # (models/muon.py); the puzzle embeddings keep their sparse SignSGD.
    use_muon: bool = False
    # Split each process's batch into N micro-batches (each with its own ACT carry), one optimizer step per global
    # batch: a recipe's global batch on fewer or smaller GPUs.
    grad_accum_steps: int = pydantic.Field(1, gt=0)
    # Reduce and log training metrics every N steps (their mean over the N steps). Reading metrics makes the
    # host wait for the GPU, so N > 1 keeps it ahead; the NaN/Inf loss check runs at the same interval.
    log_interval: int = pydantic.Field(1, gt=0)
    # Updates by which the learning-rate schedule is read behind: 0 gives update n the schedule at n (HRM's and
    # TRM's trainers), 1 at n - 1 (URM's: its first update has rate 0 in warm-up). None: the arch's original
    # trainer's (the model class's original_lr_schedule_lag).
    lr_schedule_lag: Optional[int] = pydantic.Field(None, ge=0, le=1)

    _known_outputs = pydantic.field_validator("eval_save_outputs")(check_savable_outputs)
    _known_task = pydantic.field_validator("task")(check_task_name)

    @pydantic.field_validator("max_time", mode="before")
    @classmethod
    def _duration(cls, value):
        return parse_duration(value) if isinstance(value, str) else value

    @pydantic.model_validator(mode="after")
    def _one_data_source(self):
        if self.data_path is not None and self.data_paths:
            raise ValueError(f"data_path ({self.data_path}) and data_paths ({self.data_paths}) are both set; give "
                             f"one dataset as data_path=... or several as data_paths=[...]")
        if self.data_path is None and not self.data_paths:
            raise ValueError("no training data: set data_path=<dataset folder> (or data_paths=[folder, ...])")
        return self

    @pydantic.model_validator(mode="after")
    def _eval_interval_divides_epochs(self):
        if self.eval_interval is not None and self.epochs % self.eval_interval:
            raise ValueError(f"eval_interval ({self.eval_interval}) must divide epochs ({self.epochs}); "
                             f"set eval_interval to a divisor of {self.epochs}, or epochs to a multiple of it")
        return self

    @pydantic.model_validator(mode="after")
    def _batch_divides_over_ranks(self, info: pydantic.ValidationInfo):
        world_size = (info.context or {}).get("world_size", 1)
        if self.global_batch_size % world_size:
            raise ValueError(f"global_batch_size ({self.global_batch_size}) must be divisible by the number of "
                             f"processes ({world_size}); use a multiple of {world_size}")
        per_process = self.global_batch_size // world_size
        if per_process % self.grad_accum_steps:
            raise ValueError(f"grad_accum_steps ({self.grad_accum_steps}) must divide each process's batch "
                             f"({per_process} = global_batch_size {self.global_batch_size} / {world_size} "
                             f"process(es)); choose a divisor of {per_process}")
        return self

    @pydantic.model_validator(mode="after")
    def _muon_needs_dense_weights(self):
        if self.use_muon and self.freeze_weights:
            raise ValueError("use_muon=true optimizes the dense weights, which freeze_weights=true keeps fixed; "
                             "set one of them to false")
        return self

    @pydantic.model_validator(mode="after")
    def _resume_source(self):
        if self.resume is not None and self.load_checkpoint is not None:
            raise ValueError("resume and load_checkpoint exclude each other: resume continues a run (weights, "
                             "optimizer, data position), load_checkpoint starts a new run from weights")
        if self.resume == "latest" and self.checkpoint_path is None:
            raise ValueError("resume=latest needs checkpoint_path=<run folder> to look in")
        return self

    @property
    def train_data_paths(self) -> List[str]:
        return [self.data_path] if self.data_path is not None else list(self.data_paths)

    @property
    def test_data_paths(self) -> List[str]:
        return list(self.data_paths_test) or self.train_data_paths

    @property
    def epochs_per_eval(self) -> int:
        return self.eval_interval if self.eval_interval is not None else self.epochs


def validate_config(raw: dict, world_size: int = 1) -> PretrainConfig:
    """The run's config from plain values, or a ConfigError naming every bad key."""
    return validate(PretrainConfig, raw, context={"world_size": world_size})
