"""Training curves as a PNG, readable without W&B: loss and accuracy, train and eval, against the step.

    python -m utils.plots checkpoints/<project>/<run>          # writes <run>/curves.png from metrics.jsonl

RunLogger re-draws the picture after every evaluation and when the run ends. Matplotlib is used through its Agg
canvas directly (no pyplot, no display, no global state), so drawing works in any process and thread.
"""
import argparse
import json
import math
import os
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

PLOT_FILE = "curves.png"
MAX_TRAIN_POINTS = 2000  # long runs are averaged into at most this many points per curve
MAX_KEPT_POINTS = 4 * MAX_TRAIN_POINTS  # points kept in memory per series (a running run's history)

Series = Tuple[List[float], List[float]]  # (steps, values)


class BoundedSeries:
    """A curve of at most `limit` points however many values are added: when it is full, neighbouring points
    are averaged in pairs and later values are averaged `stride` at a time, so every kept point stands for the
    same number of logged values (a day-long run logs millions; memory stays fixed)."""

    def __init__(self, limit: int):
        if limit < 2 or limit % 2:
            raise ValueError(f"limit must be an even number >= 2, got {limit}")
        self.limit = limit
        self.stride = 1
        self.steps: List[float] = []
        self.values: List[float] = []
        self._pending = [0.0, 0.0, 0]  # sums of steps and values not yet a point, and their number

    def add(self, step: float, value: float) -> None:
        pending = self._pending
        pending[0] += step
        pending[1] += value
        pending[2] += 1
        if pending[2] < self.stride:
            return
        self.steps.append(pending[0] / pending[2])
        self.values.append(pending[1] / pending[2])
        self._pending = [0.0, 0.0, 0]
        if len(self.steps) == self.limit:
            self.steps = [(a + b) / 2 for a, b in zip(self.steps[::2], self.steps[1::2])]
            self.values = [(a + b) / 2 for a, b in zip(self.values[::2], self.values[1::2])]
            self.stride *= 2

    def points(self) -> Series:
        """(steps, values), the values still being averaged included as one last point."""
        steps, values = list(self.steps), list(self.values)
        s, v, n = self._pending
        if n:
            steps.append(s / n)
            values.append(v / n)
        return steps, values

    def __len__(self) -> int:
        return len(self.steps) + (1 if self._pending[2] else 0)


class MetricHistory:
    """The metrics a plot needs, collected from metric records ({"step": N, "train/lm_loss": ..., ...}), each
    series bounded to MAX_KEPT_POINTS."""

    def __init__(self):
        self._train: Dict[str, BoundedSeries] = {}
        self._eval: Dict[str, BoundedSeries] = {}  # keyed by the full name, e.g. "eval/all/exact_accuracy"

    @property
    def train(self) -> Dict[str, Series]:
        return {k: s.points() for k, s in self._train.items()}

    @property
    def eval(self) -> Dict[str, Series]:
        return {k: s.points() for k, s in self._eval.items()}

    def add(self, record: Dict[str, float]) -> None:
        step = record.get("step")
        if step is None:
            return
        # ACT rows count only in the step they halt: in files of earlier versions a training step in which none
        # halted has all-zero accuracies (train/steps == 0) that say nothing; its loss is still real.
        none_halted = record.get("train/steps", 1.0) == 0
        for key, value in record.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            if key.startswith("train/"):
                if none_halted and not key.endswith("loss") and key != "train/lr":
                    continue
                table = self._train
            elif key.startswith("eval/"):
                table = self._eval
            else:
                continue
            table.setdefault(key, BoundedSeries(MAX_KEPT_POINTS)).add(float(step), float(value))

    def extend(self, records: Iterable[Dict[str, float]]) -> "MetricHistory":
        for record in records:
            self.add(record)
        return self

    def __bool__(self) -> bool:
        return bool(self._train or self._eval)


def read_metrics(path: str) -> List[Dict[str, float]]:
    """Records of a metrics.jsonl file; a torn last line (a run killed mid-write) is skipped."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _binned(series: Series, max_points: int) -> Series:
    """Average consecutive points so a curve has at most max_points points."""
    steps, values = series
    if len(steps) <= max_points:
        return list(steps), list(values)
    size = math.ceil(len(steps) / max_points)
    out_steps, out_values = [], []
    for i in range(0, len(steps), size):
        chunk = slice(i, i + size)
        out_steps.append(sum(steps[chunk]) / len(steps[chunk]))
        out_values.append(sum(values[chunk]) / len(values[chunk]))
    return out_steps, out_values


def _smoothed(values: Sequence[float]) -> List[float]:
    """Centred moving average over ~2% of the curve (at least 1 point each side once there are 50 points)."""
    half = len(values) // 100
    if half == 0:
        return list(values)
    prefix = [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
    out = []
    for i in range(len(values)):
        lo, hi = max(0, i - half), min(len(values), i + half + 1)
        out.append((prefix[hi] - prefix[lo]) / (hi - lo))
    return out


def _eval_sets(evaluation: Dict[str, Series]) -> List[str]:
    return sorted({key.split("/")[1] for key in evaluation})


def plot_history(history: MetricHistory, png_path: str, title: Optional[str] = None) -> str:
    """Draw loss (left) and accuracy (right) curves into png_path (written atomically); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    train_colour, eval_colours = "tab:blue", ["tab:red", "tab:green", "tab:purple", "tab:brown"]
    train, evaluation = history.train, history.eval

    def train_curve(ax, key: str, label: str, colour: str, style: str = "-") -> None:
        if key not in train:
            return
        steps, values = _binned(train[key], MAX_TRAIN_POINTS)
        if len(steps) > 1:
            ax.plot(steps, values, color=colour, alpha=0.2, linewidth=0.8)
        ax.plot(steps, _smoothed(values), color=colour, linestyle=style, linewidth=1.6, label=label)

    def eval_curve(ax, key: str, label: str, colour: str, style: str = "-") -> None:
        if key in evaluation:
            steps, values = evaluation[key]
            ax.plot(steps, values, color=colour, linestyle=style, marker="o", markersize=4, linewidth=1.6,
                    label=label)

    sets = _eval_sets(evaluation)
    train_curve(ax_loss, "train/lm_loss", "train", train_colour)
    for i, name in enumerate(sets):
        eval_curve(ax_loss, f"eval/{name}/lm_loss", f"eval ({name})", eval_colours[i % len(eval_colours)])
    ax_loss.set_title("loss (lm_loss, per sequence)")
    losses = [v for key, (_, values) in {**train, **evaluation}.items() if key.endswith("/lm_loss")
              for v in values]
    if losses and min(losses) > 0:
        ax_loss.set_yscale("log")

    train_curve(ax_acc, "train/accuracy", "train, cells", train_colour)
    train_curve(ax_acc, "train/exact_accuracy", "train, exact", train_colour, "--")
    for i, name in enumerate(sets):
        colour = eval_colours[i % len(eval_colours)]
        eval_curve(ax_acc, f"eval/{name}/accuracy", f"eval ({name}), cells", colour)
        eval_curve(ax_acc, f"eval/{name}/exact_accuracy", f"eval ({name}), exact", colour, "--")
    ax_acc.set_title("accuracy (cells / whole puzzle exact)")
    ax_acc.set_ylim(-0.02, 1.02)

    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()

    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    tmp_path = f"{png_path}.tmp.png"
    fig.savefig(tmp_path, format="png")
    os.replace(tmp_path, png_path)  # a viewer never sees a half-written picture
    return png_path


def plot_metrics_file(metrics_path: str, png_path: Optional[str] = None, title: Optional[str] = None) -> str:
    """Plot a metrics.jsonl file (default output: curves.png beside it)."""
    if png_path is None:
        png_path = os.path.join(os.path.dirname(os.path.abspath(metrics_path)), PLOT_FILE)
    return plot_history(MetricHistory().extend(read_metrics(metrics_path)), png_path, title)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder (with metrics.jsonl) or a metrics.jsonl file")
    parser.add_argument("--output", help=f"PNG to write (default: {PLOT_FILE} beside metrics.jsonl)")
    args = parser.parse_args(argv)
    path = os.path.join(args.run, "metrics.jsonl") if os.path.isdir(args.run) else args.run
    if not os.path.exists(path):
        sys.exit(f"error: {path} does not exist")
    print(plot_metrics_file(path, args.output, title=os.path.basename(os.path.dirname(os.path.abspath(path)))))


if __name__ == "__main__":
    main()
