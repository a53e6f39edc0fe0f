"""Metric logging: always a JSONL file in the run folder; W&B too unless `logger=none`.

W&B runs online when the user is logged in and offline otherwise, so a machine without an account or network
never prompts or hangs; offline runs can be uploaded later with `wandb sync`. A resumed run continues its W&B
run; one resumed from a checkpoint older than its last logged step is *rewound* to that step (W&B's
`resume_from`, so the abandoned part of the curve is not shown as the run), or, with a wandb too old for that,
continues as a new run whose config names the old run and step (`rewound_from`). metrics.jsonl is the truth
either way. With `plot=True` the run folder
also gets curves.png (train/eval loss and accuracy, utils/plots.py), re-drawn after an evaluation (at most every
PLOT_EVERY_S seconds) and at the end.
"""
import inspect
import json
import netrc
import os
import sys
import time
from typing import Dict, Optional

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "curves.png"
# Drawing costs about 0.6 s of CPU (matplotlib): a run that evaluates every few seconds (a short CPU run, a test)
# spent a third of its time drawing; one that evaluates every few minutes re-draws at each evaluation.
PLOT_EVERY_S = 30.0


def wandb_logged_in() -> bool:
    """True when an API key is configured (environment or ~/.netrc), without contacting any server."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _continuation(wandb, config: dict, resume_id: Optional[str], rewind_step: Optional[int]) -> dict:
    """wandb.init arguments that continue run `resume_id` (rewound to `rewind_step` when given)."""
    if resume_id is None:
        return {"config": config}
    if rewind_step is None:
        return {"config": config, "id": resume_id, "resume": "allow"}
    if "resume_from" in inspect.signature(wandb.init).parameters:
        return {"config": config, "resume_from": f"{resume_id}?_step={rewind_step}"}
    return {"config": {**config, "rewound_from": {"run": resume_id, "step": rewind_step}}}


class RunLogger:
    """Rank 0 only: append metrics to `<run_dir>/metrics.jsonl` and, if enabled, to W&B."""

    def __init__(self, run_dir: str, project: str, run_name: str, config: dict, use_wandb: bool,
                 resume_id: Optional[str] = None, rewind_step: Optional[int] = None, plot: bool = False,
                 plot_every_s: float = PLOT_EVERY_S):
        os.makedirs(run_dir, exist_ok=True)
        self.path = os.path.join(run_dir, METRICS_FILE)
        self.plot_path: Optional[str] = os.path.join(run_dir, PLOT_FILE) if plot else None
        self._plot_title = run_name
        self._plot_every_s = plot_every_s
        self._last_plot = -float("inf")  # time.monotonic() of the last drawing
        self._records = self._records_plotted = 0  # records in the history, and how many the picture shows
        self._history = None
        if plot:
            from utils.plots import MetricHistory, read_metrics

            # A resumed run appends to its metrics file: its curves start from what is already there.
            self._history = MetricHistory()
            if os.path.exists(self.path):
                earlier = read_metrics(self.path)
                self._history.extend(earlier)
                self._records = len(earlier)
        self._file = open(self.path, "a", encoding="utf-8")
        self._wandb_run = None
        if use_wandb:
            import wandb  # imported lazily: it is slow to import and optional with logger=none

            mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
            self._wandb_run = wandb.init(project=project, name=run_name, dir=run_dir, mode=mode,
                                         settings=wandb.Settings(silent=True),
                                         **_continuation(wandb, config, resume_id, rewind_step))
            if mode == "offline":
                print("W&B is offline (not logged in); upload the run later with: "
                      f"wandb sync {os.path.dirname(self._wandb_run.dir)}")

    @property
    def wandb_id(self) -> Optional[str]:
        return self._wandb_run.id if self._wandb_run is not None else None

    def log(self, metrics: Dict[str, float], step: int) -> None:
        record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._wandb_run is not None:
            self._wandb_run.log(metrics, step=step)
        if self._history is not None:
            self._history.add(record)
            self._records += 1
            if any(k.startswith("eval/") for k in record) and (
                    time.monotonic() - self._last_plot >= self._plot_every_s):
                self.plot()

    def plot(self) -> Optional[str]:
        """Re-draw curves.png from everything logged so far (unless it shows that already); a failure warns
        once and turns plotting off (a picture is never worth a crashed run)."""
        if self._history is None or not self._history:
            return None
        if self._records == self._records_plotted:
            return self.plot_path
        try:
            from utils.plots import plot_history

            path = plot_history(self._history, self.plot_path, title=self._plot_title)
            self._last_plot, self._records_plotted = time.monotonic(), self._records
            return path
        except Exception as err:  # noqa: BLE001 - e.g. matplotlib missing or a full disk
            print(f"warning: could not draw {self.plot_path} ({type(err).__name__}: {err}); plotting is off",
                  file=sys.stderr)
            self._history = None
            return None

    def finish(self) -> None:
        self.plot()
        self._file.close()
        if self._wandb_run is not None:
            self._wandb_run.finish()

