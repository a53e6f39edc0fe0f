"""Errors caused by the user's input or data: the entry scripts print them as one line and exit with code 2."""
from dataset.puzzle_dataset import DatasetFormatError, DatasetNotFoundError
from utils.checkpoint import CheckpointError
from utils.config import ConfigError
from utils.device import DeviceError
from utils.functions import ClassNotFoundError
from utils.hub import HubError


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; training stops before the bad update touches the weights."""


USER_ERRORS = (ConfigError, DatasetNotFoundError, DatasetFormatError, ClassNotFoundError, DeviceError, CheckpointError,
               HubError, TrainingDivergedError)
