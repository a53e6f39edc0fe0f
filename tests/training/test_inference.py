"""Adaptive-halting inference (training.evaluation.evaluate with halt_on_q) against always running halt_max_steps."""
import pytest
import torch

from dataset.puzzle_dataset import PuzzleDataset, PuzzleDatasetConfig
from training.distributed import DistInfo
from training.evaluation import evaluate
from models.registry import model_class

HALT_MAX = 4


@pytest.fixture(scope="module")
def loader(mini_sudoku):
    path = mini_sudoku(2, 2, train_size=10, test_size=20, seed=0)
    return PuzzleDataset(PuzzleDatasetConfig(seed=0, dataset_path=path, global_batch_size=8,
                                             test_set_mode=True, epochs_per_iter=1, rank=0, num_replicas=1), "test")


def make_head(q_bias, halt_max_steps=HALT_MAX):
    torch.manual_seed(0)  # same weights whatever halt_max_steps (it does not change any shape)
    cfg = dict(batch_size=8, seq_len=16, num_puzzle_identifiers=1, vocab_size=6, H_cycles=1, L_cycles=2, H_layers=1,
               L_layers=1, hidden_size=16, expansion=2, num_heads=2, pos_encodings="learned",
               halt_max_steps=halt_max_steps,
               halt_exploration_prob=0.1, forward_dtype="float32")
    head = model_class("losses@ACTLossHead")(
        model_class("hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1")(cfg), loss_type="stablemax_cross_entropy")
    with torch.no_grad():
        head.model.inner.q_head.bias.copy_(torch.tensor(q_bias))  # weight is 0: the bias alone decides
    return head


def run(head, loader, tmp_path, name, halt_on_q):
    prefix = str(tmp_path / name)
    metrics = evaluate(head, loader, DistInfo(0, 1, 0, torch.device("cpu")), ["preds", "q_halt_logits"],
                       prefix, halt_on_q=halt_on_q)
    return metrics, torch.load(f"{prefix}_all_preds.0", weights_only=True)


def test_same_predictions_when_q_head_never_halts(loader, tmp_path):
    head = make_head([-5.0, 5.0])  # q_halt < q_continue everywhere
    fixed, fixed_out = run(head, loader, tmp_path, "fixed", False)
    adaptive, adaptive_out = run(head, loader, tmp_path, "adaptive", True)
    assert torch.equal(fixed_out["preds"], adaptive_out["preds"])
    assert fixed_out["preds"].shape == (20, 16)
    for key in ("accuracy", "exact_accuracy", "steps"):
        assert adaptive[f"eval/all/{key}"] == pytest.approx(fixed[f"eval/all/{key}"], rel=1e-12)
    assert fixed["eval/all/steps"] == HALT_MAX


def test_fewer_segments_when_q_head_halts(loader, tmp_path):
    head = make_head([5.0, -5.0])  # halt after the first segment
    fixed, _ = run(head, loader, tmp_path, "fixed", False)
    adaptive, adaptive_out = run(head, loader, tmp_path, "adaptive", True)
    assert fixed["eval/all/steps"] == HALT_MAX
    assert adaptive["eval/all/steps"] == 1.0
    assert "eval/all/lm_loss" not in adaptive  # losses would mix segments; only accuracies are reported

    # Each row's predictions are those of its single segment from the initial state.
    _, one_out = run(make_head([5.0, -5.0], halt_max_steps=1), loader, tmp_path, "one", False)
    assert torch.equal(adaptive_out["preds"], one_out["preds"])


def test_rows_halting_at_different_segments_keep_their_own_outputs(loader, tmp_path, monkeypatch):
    """Rows stop at different segments: each keeps the outputs and metrics of its own halting segment."""
    head = make_head([-5.0, 5.0])
    one_segment = run(make_head([-5.0, 5.0], halt_max_steps=1), loader, tmp_path, "n1", False)[1]["preds"]
    original_inner = head.model.inner.forward

    def inner_with_row_dependent_halting(carry, batch):
        new_carry, logits, (q_halt, q_continue) = original_inner(carry, batch)  # q_continue = 5
        # Even rows want to halt from their first segment; odd rows only at the max.
        even = torch.arange(q_halt.shape[0]) % 2 == 0
        return new_carry, logits, (torch.where(even, 10.0, -5.0), q_continue)

    monkeypatch.setattr(head.model.inner, "forward", inner_with_row_dependent_halting)
    adaptive, out = run(head, loader, tmp_path, "mixed", True)
    # Batches of 8: rows 0, 2, 4, 6 of each batch stop after 1 segment, the others after HALT_MAX.
    rows = torch.arange(20) % 8
    assert torch.equal(out["preds"][rows % 2 == 0], one_segment[rows % 2 == 0])
    full = run(make_head([-5.0, 5.0]), loader, tmp_path, "full", False)[1]["preds"]
    assert torch.equal(out["preds"][rows % 2 == 1], full[rows % 2 == 1])
    assert not torch.equal(one_segment, full)  # the two halves really come from different segments
    assert adaptive["eval/all/steps"] == pytest.approx((10 * 1 + 10 * HALT_MAX) / 20)
