"""Errors of a training run that are not bad input but still end it with one line (utils/cli.py)."""
from utils.errors import UserError


class TrainingDivergedError(UserError):
    """The loss became NaN or infinite; training stops before the bad update touches the weights. The user's
    move: a lower lr, a longer warm-up, or float32."""
