"""Preemption: on SIGTERM or SIGUSR1 (what Slurm, Kubernetes and torchrun send before they kill a job), or Ctrl-C
(SIGINT), every rank finishes its step, a full checkpoint is written, and the process exits with
PREEMPTED_EXIT_CODE. A second Ctrl-C stops at once (KeyboardInterrupt: one line, exit status 130), without waiting
for the checkpoint.

The handler only records the signal; the training loop asks `stop_requested` after every step (and after each
evaluation). Ranks agree through one tiny all-reduce, so all of them stop after the same step even when the
signal reached only some of them, or reached them at different moments. On NCCL runs the vote goes through a
gloo group on the CPU: asking never waits for the GPU.
"""
import signal
from contextlib import contextmanager
from typing import Iterator, Optional

from training.distributed import DistInfo, largest_vote

# EX_TEMPFAIL (sysexits.h): a temporary failure, the command may be retried; here with resume=latest.
PREEMPTED_EXIT_CODE = 75
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Preempted(Exception):
    """Training stopped on a signal after writing a full checkpoint; carries the one-line message."""


class _State:
    received: Optional[str] = None  # name of the first signal received
    interrupted = False             # a Ctrl-C came


def _record(signum, _frame) -> None:
    if signum == signal.SIGINT:
        if _State.interrupted:
            raise KeyboardInterrupt  # the second Ctrl-C: the user does not want to wait
        _State.interrupted = True
    if _State.received is None:
        _State.received = signal.Signals(signum).name


@contextmanager
def preemption_handlers() -> Iterator[None]:
    """Record SIGTERM / SIGUSR1 / SIGINT instead of dying on them, for the duration of training."""
    previous = {sig: signal.signal(sig, _record) for sig in SIGNALS}
    _State.received, _State.interrupted = None, False
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_requested(info: DistInfo) -> Optional[str]:
    """The signal's name if any rank has received one, else None; every rank must call this at the same points."""
    # 0: none; 1: SIGTERM; 2: SIGUSR1; 3: SIGINT (the largest wins, so every rank reports the same name).
    vote = largest_vote(0 if _State.received is None else 1 + [s.name for s in SIGNALS].index(_State.received), info)
    return None if vote == 0 else SIGNALS[vote - 1].name
