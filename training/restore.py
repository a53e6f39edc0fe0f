"""Using a trained run: its config and weights, rebuilt from a checkpoint file (ours or a published HRM/TRM one,
local or hf://) and the all_config.yaml beside it. The one way evaluate.py, the tools and the experiment scripts
load a run they did not train themselves; continuing a run's training is training/checkpointing.py's."""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from dataset.common import PuzzleDatasetMetadata
from dataset.puzzle_dataset import DatasetNotFoundError, DatasetSource
from training.build import create_model, training_data
from training.checkpoint_files import load_model_state_dict, load_weights
from training.config import PretrainConfig
from training.distributed import DistInfo
from training.run_config import load_run_config

Weights = Dict[str, torch.Tensor]


@dataclass
class TrainedRun:
    checkpoint: str
    config: PretrainConfig             # the run's config, with the caller's overrides
    metadata: PuzzleDatasetMetadata    # what the model is sized from (the run's training data)
    model: nn.Module                   # the loss head with the checkpoint's weights, on the device, in eval mode
    sources: List[DatasetSource] = field(default_factory=list)  # the training folders (none when not here)


def read_trained(checkpoint: str, world_size: int, data_path: Optional[str] = None, keep_optimizer: bool = False,
                 **overrides) -> Tuple[PretrainConfig, Weights]:
    """The run's config (`data_path` replaces its datasets, `keep_optimizer` keeps its use_muon, other keywords its
    fields) and the checkpoint's weights, without building a model (for a caller that builds its own, e.g. on
    other data or to train it further)."""
    config = load_run_config(checkpoint, world_size, data_path=data_path, keep_optimizer=keep_optimizer, **overrides)
    return config, load_model_state_dict(checkpoint)


def load_trained(checkpoint: str, info: DistInfo, data_path: Optional[str] = None,
                 when_data_missing: Optional[Callable[[PretrainConfig, Weights], PuzzleDatasetMetadata]] = None,
                 **overrides) -> TrainedRun:
    """The run of `checkpoint`, ready to answer: config, metadata and the model with its weights loaded strictly.
    Without the run's dataset folder, `when_data_missing(config, weights)` gives the metadata (else the
    DatasetNotFoundError stands)."""
    config, weights = read_trained(checkpoint, info.world_size, data_path=data_path, **overrides)
    sources = []
    try:
        metadata, sources = training_data(config)
    except DatasetNotFoundError:
        if when_data_missing is None:
            raise
        metadata = when_data_missing(config, weights)
    model = create_model(config, metadata, info)
    load_weights(model, weights, checkpoint)
    model.eval()
    return TrainedRun(checkpoint=checkpoint, config=config, metadata=metadata, model=model, sources=sources)
