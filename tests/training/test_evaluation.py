"""training/evaluation.py: every test example run to its end, metric means per set, evaluators fed exactly the real
rows of their dataset, outputs saved per rank without the padding."""
import torch

import training.evaluation as evaluation
from evaluators import Evaluator
from tasks.maze.build import build, parse_args
from tests.helpers import write_tiny_dataset
from tests.training.test_build import CPU, run_config
from training.build import create_dataloader, create_model, create_task_codec, training_metadata
from training.evaluation import BoundEvaluator, evaluate, reduce_eval_metrics
from training.inference import run_to_halt


class Recorder(Evaluator):
    """Keeps the rows it is given and reports how many."""

    required_outputs = {"preds"}

    def begin_eval(self):
        self.rows = []

    def update_batch(self, batch, outputs):
        assert outputs["preds"].shape[0] == batch["inputs"].shape[0]
        self.rows += batch["puzzle_identifiers"].tolist()

    def result(self, save_path):
        return {"Recorder/rows": float(len(self.rows))}


def test_metric_means_per_set_by_hand():
    sums = {"a": {"count": torch.tensor(2.0), "accuracy": torch.tensor(1.5), "exact_accuracy": torch.tensor(1.0)}}
    means = reduce_eval_metrics(sums, ["a", "b"], CPU)
    # a: sums over its 2 counted rows; b had no batch: zeros (its count of 0 divides as 1)
    assert means == {"eval/a/accuracy": 0.75, "eval/a/exact_accuracy": 0.5, "eval/b/accuracy": 0.0,
                     "eval/b/exact_accuracy": 0.0}


def test_evaluators_and_saved_outputs_see_the_real_rows_only(tmp_path):
    # 3 groups x 1 puzzle x 5 examples = 15 test examples per set, two sets; batches of 4: the last batch of each
    # set is padded with one row (pad_id inputs, ignored labels, blank identifier).
    write_tiny_dataset(tmp_path / "d", vocab_size=8, seq_len=6, groups=3, puzzles_per_group=1,
                       examples_per_puzzle=5, sets=("x", "y"))
    config = run_config(tmp_path / "d", global_batch_size=4)
    loader = create_dataloader(config, "test", CPU)
    model = create_model(config, training_metadata(config), CPU)
    recorder = Recorder(str(tmp_path / "d"), loader.metadata)
    metrics = evaluate(model, loader, CPU, ["preds", "puzzle_identifiers"], str(tmp_path / "step_1"),
                       [BoundEvaluator(recorder, 0, 0)])
    assert metrics["eval/Recorder/rows"] == 30.0
    assert len(recorder.rows) == 30 and all(identifier > 0 for identifier in recorder.rows)  # no blank padding
    saved = torch.load(tmp_path / "step_1_all_preds.0", weights_only=True)
    assert saved["preds"].shape == (30, 6) and (saved["puzzle_identifiers"] > 0).all()
    for set_name in ("x", "y"):
        assert 0.0 <= metrics[f"eval/{set_name}/accuracy"] <= 1.0
    assert metrics["eval/wall_time_s"] > 0 and model.training  # back in training mode afterwards


def test_mazes_report_the_fraction_of_answers_that_are_a_shortest_path(tmp_path, monkeypatch):
    """Beside exact accuracy, mazes count answers that are a valid shortest path. The answers are set here: the
    label (a shortest path) on even rows, the unmarked maze on odd rows, so the fraction is known by hand."""
    build(parse_args(["--generate", "8", "--test-size", "6", "--size", "6", "--min-path-len", "4", "--seed", "0",
                      "--output-dir", str(tmp_path / "m")]))
    config = run_config(tmp_path / "m", global_batch_size=4)
    loader = create_dataloader(config, "test", CPU)
    model = create_model(config, training_metadata(config), CPU)

    def answers(model, batch, return_keys, halt_on_q):
        metrics, outputs = run_to_halt(model, batch, return_keys, halt_on_q)
        rows = torch.arange(batch["inputs"].shape[0]).view(-1, 1)
        return metrics, {**outputs, "preds": torch.where(rows % 2 == 0, batch["labels"], batch["inputs"])}

    monkeypatch.setattr(evaluation, "run_to_halt", answers)
    metrics = evaluate(model, loader, CPU, codec=create_task_codec(config, loader))
    # 6 test mazes in batches of 4: rows 0, 2 of the first batch and row 0 of the second (2 real rows) are labels.
    assert metrics["eval/all/valid_shortest_path"] == 3 / 6
