"""training/test_time.py: candidate selection, augmentation voting, trajectories, more segments, and its configs."""
import json
import os
import sys
from types import SimpleNamespace

import numpy as np
import pydantic
import pytest
import torch

from dataset.puzzle_dataset import PuzzleDataset, PuzzleDatasetConfig
from evaluators.voting import select_candidates
from models.losses import StepOutput
from models.registry import model_class
from tasks import dataset_codec
from tasks.arc.codec import ArcCodec
from tasks.sudoku.codec import SudokuCodec
from tests.helpers import expect_user_error, run_in_repo, run_in_this_process, saved_output_files
from training.config import (
    TestTimeConfig as TimeConfig,  # an alias pytest does not try to collect
)
from training.distributed import single_process
from training.evaluation import evaluate
from training.test_time import build_test_time
from utils.errors import ConfigError

CPU = single_process(torch.device("cpu"))


# ---------------------------------------------------------------------------------------------------------------
# Selection


def rows(*values):
    return np.array([[v, v] for v in values])


def test_vote_then_confidence_then_tokens():
    # Puzzle 0: [3,3] twice beats [1,1] once, whatever the confidences.
    # Puzzle 1: two candidates with two votes each: the higher mean confidence ([2,2]: 0.7) wins.
    # Puzzle 2: equal votes and equal mean confidence: the lexicographically first ([1,1]) wins, in any order.
    candidates = np.stack([rows(1, 3, 3, 5), rows(4, 2, 4, 2), rows(9, 1, 1, 9)])
    confidence = np.array([[0.99, 0.1, 0.2, 0.9], [0.6, 0.8, 0.6, 0.6], [0.5, 0.25, 0.75, 0.5]])
    chosen, distinct = select_candidates(candidates, confidence, None, "vote")
    assert [candidates[p, c, 0] for p, c in enumerate(chosen)] == [3, 2, 1]
    assert chosen.tolist() == [1, 1, 1] and distinct.tolist() == [3, 2, 2]
    reversed_order = select_candidates(candidates[:, ::-1], confidence[:, ::-1], None, "vote")[0]
    assert [candidates[p, ::-1][c, 0] for p, c in enumerate(reversed_order)] == [3, 2, 1]


def test_q_halt_rule_and_the_validity_filter():
    candidates = np.stack([rows(1, 3, 3, 5)])
    confidence = np.array([[0.2, 0.1, 0.3, 0.9]])
    assert select_candidates(candidates, confidence, None, "q_halt")[0].tolist() == [3]  # [5,5], the most confident
    valid = np.array([[True, False, False, False]])
    assert select_candidates(candidates, confidence, valid, "vote")[0].tolist() == [0]  # the only valid one
    assert select_candidates(candidates, confidence, valid, "vote")[1].tolist() == [1]
    none_valid = np.zeros((1, 4), dtype=bool)
    assert select_candidates(candidates, confidence, none_valid, "vote")[0].tolist() == [1]  # all kept then


def test_q_converged_and_their_combinations_by_hand():
    # Four variants of one puzzle: answers [1,1], [3,3], [3,3], [5,5]; confidences and last-step changes set by hand.
    candidates = np.stack([rows(1, 3, 3, 5)])
    confidence = np.array([[0.2, 0.9, 0.3, 0.9]])
    change = np.array([[0.30, 0.05, 0.01, 0.02]])
    pick = lambda rule, valid=None: select_candidates(candidates, confidence, valid, rule, change)[0].item()  # noqa
    assert pick("q") == pick("q_halt") == 1  # the highest q_halt; of equals (1 and 3), the first
    assert pick("converged") == 2  # the smallest change: nearest a fixed point
    assert pick(["q", "converged"]) == 3  # q ties 1 and 3; converged breaks the tie
    assert pick(["vote", "converged"]) == 2  # [3,3] has two votes; of its two variants the more converged
    assert pick("vote") == 1  # vote alone: the first variant of the winning answer
    valid = np.array([[True, False, False, True]])
    # Only [1,1] and [5,5] are valid: one vote each, [5,5] more confident (0.9 against 0.2) and more converged.
    assert pick(["q"], valid) == pick(["converged"], valid) == pick(["vote"], valid) == 3
    assert pick(["converged"], np.array([[True, False, False, False]])) == 0
    with pytest.raises(ValueError, match="converged criterion needs"):
        select_candidates(candidates, confidence, None, "converged")


@pytest.mark.parametrize("select, message", [
    (["q", "valid"], "valid drops the answers that fail the check, so it comes first"),
    (["q", "q"], "each once"),
    ([], "name one or more of vote, q, converged, valid"),
    (["best"], "Input should be 'vote', 'q', 'converged' or 'valid'"),
])
def test_bad_selectors(select, message):
    with pytest.raises(pydantic.ValidationError, match=message):
        TimeConfig(select=select)
    assert TimeConfig(select="q_halt").select == ["q"]  # its earlier name
    assert TimeConfig(select="valid").ranking == ["vote"] and TimeConfig(select="valid").filters


# ---------------------------------------------------------------------------------------------------------------
# A model that knows some answers: voting over augmentations, by hand.


class LookupHead(torch.nn.Module):
    """A stand-in for a loss head: predicts, for each input row, the answer a table gives (else the input), with
    q_halt = the table's confidence; one segment."""

    def __init__(self, table):
        super().__init__()
        self.table = table  # input row bytes -> (answer tokens, q_halt logit)
        self.model = SimpleNamespace(config=SimpleNamespace(total_len=4, hidden_size=2))

    def initial_carry(self, batch):
        return SimpleNamespace(halted=torch.ones(len(batch["inputs"]), dtype=torch.bool))

    def forward(self, carry, batch, return_keys, max_steps=None, latent_noise=None, halt_on_q=False):
        answers, q = [], []
        for row in batch["inputs"].numpy():
            answer, logit = self.table.get(row.astype(np.int32).tobytes(), (row, -3.0))
            answers.append(answer)
            q.append(logit)
        preds = torch.as_tensor(np.array(answers))
        labelled = (batch["labels"] != -100).any(-1)
        metrics = {"count": labelled.sum(), "steps": labelled.sum()}
        return StepOutput(carry, None, metrics, {"preds": preds, "q_halt_logits": torch.tensor(q)}, True)


def sudoku4_rows():
    """A 4x4 Sudoku (2x2 boxes) as tokens: the puzzle (a few clues) and its solution."""
    solution = np.array([1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1]) + 1
    puzzle = solution.copy()
    puzzle[[1, 2, 4, 7, 8, 11, 13, 14]] = 1
    return puzzle.astype(np.int32), solution.astype(np.int32)


def test_votes_over_augmentations_are_counted_in_the_puzzles_frame():
    puzzle, solution = sudoku4_rows()
    metadata = SimpleNamespace(vocab_size=6, seq_len=16)
    tt = build_test_time(TimeConfig(augmentations=4, augmentation_kinds=["digits", "bands", "stacks"]),
                         metadata, SudokuCodec(4), seed=0, where="sudoku4")
    members = tt.members
    assert np.array_equal(members[0].positions, np.arange(16))  # the identity first
    wrong = solution.copy()
    wrong[[0, 1]] = wrong[[1, 0]]
    # Augmentations 1 and 2 give the right answer (in their frame), 0 and 3 the same wrong one, more confident.
    table = {}
    for a, member in enumerate(members):
        answer = solution if a in (1, 2) else wrong
        table[member.apply(puzzle).astype(np.int32).tobytes()] = (member.apply(answer), 2.0 if a in (0, 3) else 1.0)
    head = LookupHead(table)
    batch = {"inputs": torch.as_tensor(puzzle[None]), "labels": torch.as_tensor(solution[None]),
             "puzzle_identifiers": torch.zeros(1, dtype=torch.int32)}
    metrics, selected = tt.run_batch(head, batch, return_keys=["preds"])
    # Two votes each: the wrong answer's mean sigmoid(2.0) beats the right one's sigmoid(1.0).
    assert torch.equal(selected["preds"][0], torch.as_tensor(wrong))
    assert metrics["exact_accuracy"].item() == 0 and metrics["oracle@4"].item() == 1
    assert metrics["candidates"].item() == 2 and metrics["valid"].item() == 0  # the wrong one breaks the rules
    # Dropping candidates that fail the Sudoku check leaves the right one.
    tt.config = TimeConfig(augmentations=4, augmentation_kinds=["digits", "bands", "stacks"], filter_invalid=True)
    metrics, selected = tt.run_batch(head, batch, return_keys=["preds"])
    assert torch.equal(selected["preds"][0], torch.as_tensor(solution)) and metrics["exact_accuracy"].item() == 1


# ---------------------------------------------------------------------------------------------------------------
# With a real model


@pytest.fixture(scope="module")
def sudoku4(mini_sudoku):
    return mini_sudoku(2, 2, train_size=16, test_size=24, seed=11)


def tiny_trm(seed=0):
    torch.manual_seed(seed)
    cfg = dict(batch_size=8, seq_len=16, num_puzzle_identifiers=1, vocab_size=6, H_cycles=2, L_cycles=2, H_layers=0,
               L_layers=1, hidden_size=16, expansion=2, num_heads=2, pos_encodings="learned", puzzle_emb_len=0,
               halt_max_steps=3, halt_exploration_prob=0.1, forward_dtype="float32")
    head = model_class("losses@ACTLossHead")(
        model_class("recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1")(cfg),
        loss_type="softmax_cross_entropy").eval()
    with torch.no_grad():  # a Q head that reads the state (it starts at zero weights: q_halt = -5 everywhere)
        head.model.inner.q_head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(seed))
    return head


def loader(path, batch):
    return PuzzleDataset(PuzzleDatasetConfig(seed=0, dataset_path=path, global_batch_size=batch, test_set_mode=True,
                                             epochs_per_iter=1, rank=0, num_replicas=1), "test")


def run(head, data, tmp_path, name, config=None, batch=8, halt_on_q=False):
    eval_loader = loader(data, batch)
    tt = build_test_time(config or TimeConfig(), eval_loader.metadata, dataset_codec([eval_loader.metadata]), 3,
                         "sudoku4") if config is not False else None
    prefix = str(tmp_path / name)
    metrics = evaluate(head, eval_loader, CPU, ["preds", "q_halt_logits"], prefix, halt_on_q=halt_on_q,
                       test_time=tt)
    return metrics, torch.load(f"{prefix}_all_preds.0", weights_only=True)


@pytest.mark.parametrize("halt_on_q", [False, True])
def test_one_variant_equals_plain_evaluation_exactly(sudoku4, tmp_path, halt_on_q):
    head = tiny_trm()
    plain, plain_saved = run(head, sudoku4, tmp_path, "plain", config=False, halt_on_q=halt_on_q)
    single, single_saved = run(head, sudoku4, tmp_path, "single", halt_on_q=halt_on_q)
    for key in ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps"):
        assert single[f"eval/all/{key}"] == plain[f"eval/all/{key}"], key
    assert single["eval/all/oracle@1"] == single["eval/all/exact_accuracy"] and single["eval/all/candidates"] == 1
    assert torch.equal(single_saved["preds"], plain_saved["preds"])
    assert torch.equal(single_saved["q_halt_logits"], plain_saved["q_halt_logits"])


def test_trajectories_segments_and_batch_size(sudoku4, tmp_path):
    head = tiny_trm()
    config = TimeConfig(augmentations=3, trajectories=4, noise_std=1.0, noise_at="segment", segments=5)
    small, small_saved = run(head, sudoku4, tmp_path, "b4", config, batch=4)
    large, large_saved = run(head, sudoku4, tmp_path, "b8", config, batch=8)
    # The same augmentations and noise whatever the batch: the same selection.
    assert torch.equal(small_saved["preds"], large_saved["preds"])
    assert small["eval/all/exact_accuracy"] == large["eval/all/exact_accuracy"]
    assert large["eval/all/steps"] == 5.0  # segments=5, past halt_max_steps (3)
    assert large["eval/all/oracle@12"] >= large["eval/all/exact_accuracy"]
    plain, plain_saved = run(head, sudoku4, tmp_path, "plain", config=False)
    assert not torch.equal(plain_saved["q_halt_logits"], large_saved["q_halt_logits"])  # noise and segments act


@pytest.mark.parametrize("select", ["q", "converged", ["valid", "q"], ["valid", "converged", "vote"]])
def test_with_one_variant_every_selector_equals_plain_evaluation(sudoku4, tmp_path, select):
    head = tiny_trm()
    plain, plain_saved = run(head, sudoku4, tmp_path, "plain", config=False)
    single, single_saved = run(head, sudoku4, tmp_path, "single", TimeConfig(select=select))
    assert single["eval/all/exact_accuracy"] == plain["eval/all/exact_accuracy"]
    assert torch.equal(single_saved["preds"], plain_saved["preds"])
    assert torch.equal(single_saved["q_halt_logits"], plain_saved["q_halt_logits"])


def test_segments_past_the_trained_limit_and_halting_on_q(sudoku4, tmp_path):
    """halt_max_steps is 3: segments=7 runs 7 with halting=never. A Q head that says halt everywhere (q_halt > 0)
    stops every row after its first segment with halting=q, however many segments are allowed."""
    head = tiny_trm()
    deep, _ = run(head, sudoku4, tmp_path, "deep", TimeConfig(segments=7))
    assert deep["eval/all/steps"] == 7.0
    with torch.no_grad():
        head.model.inner.q_head.weight.zero_()
        head.model.inner.q_head.bias.fill_(4.0)
    stopped, _ = run(head, sudoku4, tmp_path, "stopped", TimeConfig(segments=7, halting="q"))
    assert stopped["eval/all/steps"] == 1.0


def test_cycles_scale_runs_k_times_the_cycles_of_every_segment(sudoku4, tmp_path):
    head = tiny_trm()  # H_cycles 2, L_cycles 2: each segment calls the network 2 x (2 + 1) = 6 times
    calls = []
    head.model.inner.L_level.register_forward_hook(lambda *_: calls.append(1))
    run(head, sudoku4, tmp_path, "once", TimeConfig(segments=1), batch=24)
    once = len(calls)
    run(head, sudoku4, tmp_path, "thrice", TimeConfig(segments=1, cycles_scale=3), batch=24)
    assert once == 6 and len(calls) - once == 18  # one batch of the 24 test puzzles
    assert head.model.inner.config.H_cycles == 2  # the trained depth again after the evaluation


def test_a_core_without_cycles_refuses_cycles_scale():
    head = tiny_trm()
    head.model.inner.cycles_key = None
    with head.deeper(1):
        pass
    with pytest.raises(ConfigError, match="test_time.cycles_scale: TinyRecursiveReasoningModel_ACTV1 has no cycles"):
        with head.deeper(2):
            pass


@pytest.mark.parametrize("overrides, message", [
    (dict(augmentation_kinds=["colours"]), "test_time.augmentation_kinds: sudoku has no 'colours' augmentation"),
    (dict(augmentations=2, augmentation_kinds=["transpose"]), "sudoku has no 'transpose' augmentation"),
])
def test_augmentations_the_task_does_not_have(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_test_time(TimeConfig(**overrides), SimpleNamespace(vocab_size=8, seq_len=36), SudokuCodec(6), 0,
                        "sudoku6")


def test_unknown_task_and_arc():
    with pytest.raises(ConfigError, match="test_time.augmentations: cannot tell the task of d"):
        build_test_time(TimeConfig(augmentations=2), SimpleNamespace(vocab_size=7, seq_len=50), None, 0, "d")
    arc = SimpleNamespace(vocab_size=12, seq_len=900)
    with pytest.raises(ConfigError, match="test_time.augmentations: arc has no augmentations to draw .*already "
                                          "holds every test input"):
        build_test_time(TimeConfig(augmentations=2), arc, ArcCodec(), 0, "arc")
    with pytest.raises(ConfigError, match="test_time.filter_invalid: arc has no answer check to select valid "):
        build_test_time(TimeConfig(filter_invalid=True), arc, ArcCodec(), 0, "arc")
    assert build_test_time(TimeConfig(trajectories=2, noise_std=0.1), arc, ArcCodec(), 0, "arc").codec.name == "arc"


# ---------------------------------------------------------------------------------------------------------------
# Through evaluate.py


@pytest.fixture(scope="module")
def checkpoint(sudoku4, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tt") / "run"
    result = run_in_repo([sys.executable, "pretrain.py", f"data_path={sudoku4}", f"checkpoint_path={run_dir}",
                          "arch=trm", "arch.H_layers=0", "arch.L_layers=1", "arch.H_cycles=2", "arch.L_cycles=2",
                          "arch.hidden_size=16", "arch.num_heads=2", "arch.puzzle_emb_ndim=0", "arch.puzzle_emb_len=0",
                          "arch.halt_max_steps=2", "global_batch_size=8", "epochs=1", "eval_interval=1", "lr=1e-3",
                          "logger=none",
                          "device=cpu"])
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir / "step_2"


def evaluate_cli(checkpoint, *args, nproc=0):
    launcher = [sys.executable] if nproc == 0 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    f"--nproc-per-node={nproc}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return run_in_repo([*launcher, "evaluate.py", f"checkpoint={checkpoint}", "device=cpu", *args], env=env)


@pytest.mark.parametrize("args, fragment", [
    (["test_time.augmentations=0"], "test_time.augmentations: Input should be greater than or equal to 1"),
    (["test_time.trajectories=0"], "test_time.trajectories: Input should be greater than or equal to 1"),
    (["test_time.noise_std=-0.5"], "test_time.noise_std: Input should be greater than or equal to 0"),
    (["test_time.trajectories=4"], "trajectories=4 with noise_std=0 runs the same trajectory 4 times"),
    (["test_time.augmentations=2", "test_time.augmentation_kinds=[colours]"],
     "test_time.augmentation_kinds: sudoku has no 'colours' augmentation; it has: digits, bands, rows, stacks, "
     "columns, transpose"),
    (["test_time.augmentations=2", "save_outputs=[logits]"], "eval_save_outputs: logits cannot be saved"),
    (["test_time.cycles_scale=0"], "test_time.cycles_scale: Input should be greater than or equal to 1"),
    (["test_time.segments=0"], "test_time.segments: Input should be greater than 0"),
    (["test_time.select=[q,valid]"], "valid drops the answers that fail the check, so it comes first"),
    (["test_time.halting=sometimes"], "test_time.halting: Input should be 'never' or 'q'"),
])
def test_bad_test_time_settings_are_one_line_errors(checkpoint, args, fragment):
    expect_user_error(run_in_this_process(["evaluate.py", f"checkpoint={checkpoint}", "device=cpu", *args]), fragment)


@pytest.mark.slow
def test_two_processes_select_what_one_does(checkpoint, tmp_path):
    args = ["test_time.augmentations=4", "test_time.trajectories=2", "test_time.noise_std=0.5",
            "test_time.filter_invalid=true", "save_outputs=[preds]", "global_batch_size=8"]
    one = evaluate_cli(checkpoint, *args)
    assert one.returncode == 0, one.stderr[-3000:]
    (one_file,) = saved_output_files(one.stdout)
    one_preds = torch.load(one_file, weights_only=True)["preds"]
    two = evaluate_cli(checkpoint, *args, nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    two_files = saved_output_files(two.stdout)
    assert len(two_files) == 2 and one_file not in two_files  # the second evaluation does not replace the first's
    halves = [torch.load(path, weights_only=True)["preds"] for path in two_files]
    metrics = [json.loads(out.stdout[out.stdout.index("{"):out.stdout.rindex("}") + 1]) for out in (one, two)]
    for key in ("exact_accuracy", "oracle@8", "candidates", "valid"):
        assert metrics[0][f"eval/all/{key}"] == metrics[1][f"eval/all/{key}"], key
    # Evaluation batches of 8 // 8 variants = 1 puzzle per process: rank r holds every other puzzle.
    interleaved = torch.stack([halves[i % 2][i // 2] for i in range(len(one_preds))])
    assert torch.equal(interleaved, one_preds)
