"""Building a run from its config: data loaders, the model in its loss head, optimizers, evaluators, train state."""
import os
from typing import List, Optional, Tuple

import pydantic
import torch
from torch import nn

from dataset.common import PuzzleDatasetMetadata
from dataset.puzzle_dataset import DatasetSource, PuzzleDataset, PuzzleDatasetConfig, load_merged_metadata
from models.adam_atan2 import build_adam_atan2
from models.common import compile_model
from models.muon import MatchedAdamW, Muon
from models.registry import model_class
from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed
from tasks import dataset_codec, evaluator_class
from tasks.base import TaskCodec
from training.checkpoint_files import (CheckpointError, load_model_state_dict, load_trainer_optimizer_states,
                                       load_weights)
from training.config import PretrainConfig, eval_batch_size
from training.distributed import DistInfo, broadcast_module
from training.ema import ModelEMA
from training.evaluation import BoundEvaluator
from training.state import RNG, Carry, Optimizers, PendingMetrics, Schedule, TrainState
from training.test_time import TestTimeCompute, build_test_time, check_savable
from utils.cli import format_validation_error
from utils.device import default_compile, default_forward_dtype, is_cuda
from utils.errors import ConfigError

# Model config keys the trainer derives from the dataset and the run; setting them under arch is an error.
DERIVED_ARCH_KEYS = ("batch_size", "seq_len", "vocab_size", "num_puzzle_identifiers")


def create_dataloader(config: PretrainConfig, split: str, info: DistInfo, identifier_offset: int = 0
                      ) -> PuzzleDataset:
    """The training loader, or the evaluation loader (whose batches shrink so that their puzzles' test-time
    variants fill at most a training batch); `identifier_offset` shifts the puzzle identifiers (tools/adapt.py)."""
    batch = config.global_batch_size if split == "train" else eval_batch_size(
        config.global_batch_size, config.test_time.variants, info.world_size)
    return PuzzleDataset(PuzzleDatasetConfig(
        seed=config.seed,
        dataset_paths=config.train_data_paths if split == "train" else config.test_data_paths,
        global_batch_size=batch,
        test_set_mode=split != "train",
        epochs_per_iter=config.epochs_per_eval,
        rank=info.rank,
        num_replicas=info.world_size,
        identifier_offset=identifier_offset,
    ), split=split)


def training_data(config: PretrainConfig) -> Tuple[PuzzleDatasetMetadata, List[DatasetSource]]:
    """The metadata a run's model is sized from, and each of its folders': its training folders' train split (their
    test split where only that is here, e.g. an evaluation-only copy of a dataset)."""
    paths = config.train_data_paths
    split = "train" if all(os.path.isdir(os.path.join(p, "train")) for p in paths) else "test"
    return load_merged_metadata(paths, split)


def training_metadata(config: PretrainConfig) -> PuzzleDatasetMetadata:
    return training_data(config)[0]


def instantiate(cls, where: str, *args, **kwargs):
    """Build a model, loss head or evaluator from config keys, turning a bad key into a one-line ConfigError."""
    try:
        return cls(*args, **kwargs)
    except pydantic.ValidationError as err:
        raise ConfigError(f"{where}: {format_validation_error(err)}") from None
    except (TypeError, ConfigError) as err:  # e.g. an unexpected keyword argument, a loss_type it does not know
        raise ConfigError(f"{where}: {err}") from None


def model_config_dict(config: PretrainConfig, metadata: PuzzleDatasetMetadata, info: DistInfo) -> dict:
    """The model's config: the arch keys, over the trainer's defaults, plus the sizes derived from the data."""
    given = config.arch.extra
    derived = sorted(set(given) & set(DERIVED_ARCH_KEYS))
    if derived:
        raise ConfigError(f"arch.{derived[0]} is set by the trainer (batch_size from global_batch_size and the "
                          f"number of processes; seq_len, vocab_size, num_puzzle_identifiers from the dataset); "
                          f"remove it from the arch config")
    model_cfg = {"forward_dtype": default_forward_dtype(info.device), "seed": config.seed, **given}
    model_cfg.update(
        batch_size=config.global_batch_size // info.world_size,
        vocab_size=metadata.vocab_size,
        seq_len=metadata.seq_len,
        num_puzzle_identifiers=metadata.num_puzzle_identifiers,
        seed=model_cfg["seed"] + info.rank,  # ACT exploration differs per rank, reproducibly
    )
    return model_cfg


def create_model(config: PretrainConfig, metadata: PuzzleDatasetMetadata, info: DistInfo) -> nn.Module:
    """The model wrapped in its loss head, on the device, identical on every rank; compiled in place when
    compile is on (its state dict keeps the published key names, without torch.compile's prefix)."""
    model_cls = model_class(config.arch.name)
    loss_head_cls = model_class(config.arch.loss.name)
    model_cfg = model_config_dict(config, metadata, info)

    torch.manual_seed(config.seed)  # initial weights depend on the seed only (and are broadcast anyway)
    with torch.device(info.device):  # build in place: no CPU copy of a large puzzle-embedding table
        model = instantiate(model_cls, "arch", model_cfg)
        model = instantiate(loss_head_cls, "arch.loss", model, **config.arch.loss.extra)

    if config.load_checkpoint is not None:
        load_weights(model, load_model_state_dict(config.load_checkpoint), config.load_checkpoint,
                     resize_puzzle_emb=True, strict=config.load_strict)
    if config.freeze_weights:
        if not model.sparse_embeddings():
            raise ConfigError("freeze_weights=true trains only the puzzle embeddings, but this model has none "
                              "(arch.puzzle_emb_ndim is 0)")
        model.requires_grad_(False)  # the puzzle rows are buffers with their own optimizer: they still learn

    if info.world_size > 1:
        broadcast_module(model)

    if config.compile if config.compile is not None else default_compile(info.device):
        compile_model(model, dynamic=False)
    return model


def create_optimizers(config: PretrainConfig, model: nn.Module, info: DistInfo) -> Optimizers:
    """Sparse SignSGD for each puzzle-embedding table; for the dense parameters that train, AdamATan2, or with
    use_muon Muon for the 2-D ones and AdamW for the rest (URM's; in that order, as URM's trainer groups them).
    Each has its base learning rate; the schedule sets the rate of every step."""
    optimizers = []
    for table in model.sparse_embeddings():
        optimizers.append((CastedSparseEmbeddingSignSGD_Distributed(
            table.buffers(), world_size=info.world_size, lr=0.0, weight_decay=config.puzzle_emb_weight_decay),
            config.puzzle_emb_lr))
    dense = [p for p in model.parameters() if p.requires_grad]
    betas = (config.beta1, config.beta2)
    if config.use_muon:
        optimizers.append((Muon([p for p in dense if p.ndim == 2], weight_decay=config.weight_decay), config.lr))
        others = [p for p in dense if p.ndim != 2]
        if others:
            optimizers.append((MatchedAdamW(others, betas=betas, weight_decay=config.weight_decay), config.lr))
    elif dense:  # none with freeze_weights
        optimizers.append((build_adam_atan2(dense, lr=0.0, betas=betas, weight_decay=config.weight_decay,
                                            on_cuda=is_cuda(info.device)), config.lr))
    return Optimizers(optimizers)


def create_evaluators(config: PretrainConfig, eval_loader: PuzzleDataset) -> List[BoundEvaluator]:
    """Task evaluators ("module@Class": class Class of tasks/<module>/evaluator.py, e.g. ARC pass@K), one per test
    dataset."""
    bound = []
    for index, source in enumerate(eval_loader.sources):
        for spec in config.evaluators:
            cls = evaluator_class(spec.name)
            evaluator = instantiate(cls, f"evaluators ({spec.name})", source.path, eval_loader.metadata,
                                    **spec.extra)
            bound.append(BoundEvaluator(evaluator, index, source.identifier_offset))
    return bound


def create_task_codec(config: PretrainConfig, eval_loader: PuzzleDataset) -> Optional[TaskCodec]:
    """The task of the test data (its dataset.json's, else config.task, else the one its shape fits; None when that
    is not one task), which test-time compute and the task's evaluation metric use. A TaskError when test-time
    compute needs a task that cannot be told."""
    settings = config.test_time
    needed_for = ("test_time.augmentations" if settings.augmentations > 1 else
                  "test_time.filter_invalid" if settings.filter_invalid else
                  "test_time.select" if settings.filters else None)
    return dataset_codec([source.metadata for source in eval_loader.sources], config.task,
                         ", ".join(config.test_data_paths), needed_for)


def create_test_time(config: PretrainConfig, eval_loader: PuzzleDataset, codec: Optional[TaskCodec]
                     ) -> Optional[TestTimeCompute]:
    """The evaluation's test-time compute (None for plain evaluation), checked against the test data's task."""
    if config.test_time.plain:
        return None
    check_savable(config.eval_save_outputs)
    if config.test_time.cycles_scale > 1 and model_class(config.arch.name).inner_class.cycles_key is None:
        raise ConfigError(f"test_time.cycles_scale: {config.arch.name} has no cycles to scale; use cycles_scale=1 "
                          f"and test_time.segments for more depth")
    return build_test_time(config.test_time, eval_loader.metadata, codec, config.seed,
                           ", ".join(config.test_data_paths))


def total_train_steps(config: PretrainConfig, train_loader: PuzzleDataset) -> int:
    """The steps the run will actually take: every complete batch of every block of eval_interval epochs (the
    original trainers' estimate, epochs x groups x mean examples / batch, also counts batches the loader drops,
    so its last step never came). A run that would take none is a ConfigError, before anything is written."""
    steps = train_loader.count_train_batches(config.epochs // config.epochs_per_eval)
    if steps == 0:
        metadata = train_loader.metadata
        per_epoch = round(metadata.total_groups * metadata.mean_puzzle_examples)
        raise ConfigError(f"global_batch_size ({config.global_batch_size}) is larger than the training data of one "
                          f"evaluation block (about {per_epoch} examples per epoch x {config.epochs_per_eval} "
                          f"epoch(s)): the run would train 0 steps; lower global_batch_size or raise eval_interval")
    return steps


def load_trainer_optimizers(optimizers: Optimizers, path: str) -> None:
    """The optimizer states of a URM trainer checkpoint (load_optimizer_state), when it holds them; a model file
    has none, and nothing changes."""
    states = load_trainer_optimizer_states(path)
    if states is None:
        return
    if len(states) != len(optimizers):
        raise CheckpointError(f"{path} holds {len(states)} optimizer states and this run has {len(optimizers)} "
                              f"optimizers: use_muon must be as in the run that wrote it, or set "
                              f"load_optimizer_state=false")
    optimizers.load_state_dict(states)
    print(f"note: optimizer states loaded from {path} (load_optimizer_state=false to start them afresh)")


def lr_schedule_lag(config: PretrainConfig) -> int:
    """config.lr_schedule_lag, or where unset the lag of the arch's original trainer (URM's 1, HRM's and TRM's 0)."""
    if config.lr_schedule_lag is not None:
        return config.lr_schedule_lag
    return getattr(model_class(config.arch.name), "original_lr_schedule_lag", 0)


def init_train_state(config: PretrainConfig, metadata: PuzzleDatasetMetadata, info: DistInfo,
                     total_steps: int) -> TrainState:
    """Model, optimizers, schedule, EMA and empty carry of a new run of `total_steps` steps (the schedule's
    length)."""
    model = create_model(config, metadata, info)
    optimizers = create_optimizers(config, model, info)
    if config.load_checkpoint is not None and config.load_optimizer_state:
        load_trainer_optimizers(optimizers, config.load_checkpoint)
    schedule = Schedule(total_steps, config.lr_warmup_steps, config.lr_min_ratio, lr_schedule_lag(config))
    return new_train_state(config, model, optimizers, schedule, info)


def new_train_state(config: PretrainConfig, model: nn.Module, optimizers: Optimizers, schedule: Schedule,
                    info: DistInfo) -> TrainState:
    """The state of a run before its first step: its model, optimizers and schedule, no carry yet, no pending
    metrics, the model's generators, and the EMA of the weights with config.ema."""
    return TrainState(model=model, optimizers=optimizers, schedule=schedule, carry=Carry(), metrics=PendingMetrics(),
                      rng=RNG(model, info.device), ema=ModelEMA(model, config.ema_rate) if config.ema else None)
