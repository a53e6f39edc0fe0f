"""benchmarks/train_throughput.py (and loader_throughput.py): runs on the CPU, counts FLOPs right, and times the
trainer's own step (training.loop.train_batch) at each log interval."""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from benchmarks import loader_throughput as lt
from benchmarks import train_throughput as tt
from tests.helpers import REPO
from training.errors import TrainingDivergedError
from training.loop import train_batch
from models.registry import model_class

REQUIRED_KEYS = ("steps_per_s", "samples_per_s", "tokens_per_s", "peak_mem_gib", "mfu", "device")
QUICK = ["--device", "cpu", "--steps", "2", "--repeats", "2", "--warmup", "1", "--threads", "1", "--peak-size", "256"]


def run_script(script, *args, timeout=600):
    result = subprocess.run([sys.executable, os.path.join("benchmarks", script), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


def assert_positive_finite(summary, keys):
    for key in keys:
        assert isinstance(summary[key], (int, float)) and math.isfinite(summary[key]) and summary[key] > 0, key


def test_tiny_preset_prints_table_then_one_json_line():
    lines, summary = run_script("train_throughput.py", "--preset", "tiny", *QUICK)
    assert any(line.startswith("log_interval=1 ") for line in lines[:-1])  # the human-readable table
    assert any(line.startswith("log_interval=never ") for line in lines[:-1])
    assert summary["variant"] == "log_interval=1" and summary["log_intervals"] == [1, "never"]
    assert summary["device"] == "cpu" and summary["preset"] == "tiny" and summary["compile"] is False
    assert_positive_finite(summary, [k for k in REQUIRED_KEYS if k != "device"] + ["flops_per_step", "peak_flops"])
    assert summary["mfu"] < 1.5  # a figure above the measured peak would mean a wrong count or timer
    assert summary["samples_per_s"] == pytest.approx(summary["steps_per_s"] * 32)
    assert summary["tokens_per_s"] == pytest.approx(summary["samples_per_s"] * 16)
    assert summary["torch"] == torch.__version__ and summary["load_avg"] is not None
    for figures in summary["variants"].values():
        assert_positive_finite(figures, ("steps_per_s", "ms_per_step", "mfu", "peak_mem_gib"))


def test_json_only_prints_a_single_line():
    lines, summary = run_script("train_throughput.py", "--preset", "tiny", "--log-intervals", "3", "--json-only",
                                *QUICK)
    assert len(lines) == 1 and summary["variant"] == "log_interval=3"
    assert list(summary["variants"]) == ["log_interval=3"] and summary["log_intervals"] == [3]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="inductor needs a C++ compiler")
def test_compiled_tiny_preset_does_not_recompile_while_timing(tmp_path):
    out = tmp_path / "results.jsonl"
    # One warm-up step compiles everything: the ACT exploration draws run outside the compiled graph, so nothing
    # recompiles at step 2 (it did while the generator was created inside it), nor at any later log interval.
    _, summary = run_script("train_throughput.py", "--preset", "tiny", "--compile", "--log-intervals", "1,never",
                            "--out", str(out), *QUICK)
    assert summary["compile"] is True and summary["recompiles_during_timing"] == 0
    assert summary["dynamo"]["unique_graphs"] > 0
    assert json.loads(out.read_text().strip()) == summary


HRM = "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"
TRM = "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"


def model_of(name: str, **config):
    """An ACT model of these settings, on the meta device (shapes only: its FLOPs are counted, not run)."""
    defaults = dict(num_puzzle_identifiers=2, pos_encodings="rope", halt_exploration_prob=0.0)
    if "loops" not in config:  # HRM's and TRM's name for the segment limit
        defaults["halt_max_steps"] = 2
    with torch.device("meta"):
        return model_class(name)({**defaults, **config})


def test_flop_formula_matches_a_hand_count():
    # hidden 8 (inner round(8*4*2/3)=21 -> 256), 2 heads, seq 4 + 1 puzzle position, batch 2, vocab 5,
    # one layer per module, H_cycles 2, L_cycles 3.
    cfg = dict(batch_size=2, seq_len=4, vocab_size=5, hidden_size=8, expansion=4, puzzle_emb_ndim=8, H_layers=1,
               L_layers=1, H_cycles=2, L_cycles=3, num_heads=2)
    S, h, inner = 5, 8, 256
    per_seq_block = S * (2 * h * 3 * h + 2 * h * h + 2 * h * 2 * inner + 2 * inner * h) + 2 * (2 * S * S * h)
    assert per_seq_block == 5 * (384 + 128 + 8192 + 4096) + 800 == 64_800
    block = 2 * per_seq_block
    heads = 2 * (2 * S * h * 5) + 2 * (2 * h * 2)  # lm_head over all 5 positions, q_head on position 0
    assert heads == 2 * 400 + 2 * 32 == 864
    # Segment: 6 L calls + 2 H calls + heads. Step: 5 L + 1 H no-grad; 1 L + 1 H + heads three times (fwd+bwd);
    # plus one more full segment for the target Q.
    expected = 6 * block + 3 * (2 * block + heads) + (8 * block + heads)
    assert expected == 20 * block + 4 * heads == 2_595_456
    breakdown = tt.flop_breakdown(model_of(HRM, **cfg), 2)
    assert breakdown["step"] == expected
    assert breakdown["segment"] == 8 * block + heads and breakdown["no_grad"] == 6 * block


def test_published_sudoku_flops_per_step():
    config, metadata = tt.build_config("sudoku", "cpu", compile_model=False)
    assert config.global_batch_size == 768 and config.arch.extra["hidden_size"] == 512
    arch = {k: v for k, v in config.arch.extra.items() if k != "forward_dtype"}
    model = model_of(HRM, batch_size=768, vocab_size=11, seq_len=81, **arch)
    call = 768 * 4 * (82 * 2 * 512 * (4 * 512 + 3 * 1536) + 4 * 82 * 82 * 512)  # one call of L (or H): 4 blocks
    assert model.inner.L_level.flops(768, 82) == model.inner.H_level.flops(768, 82) == call
    flops = tt.flop_breakdown(model, 768)
    assert flops["step"] == 16 * call + 4 * flops["heads"]
    assert flops["step"] == pytest.approx(2.8150e13, rel=1e-4)


def test_trm_flop_formula_by_hand():
    # TRM, hidden 8, seq 4 + a 2-position prefix (S = 6), batch 2, vocab 5, one layer, H_cycles 2, L_cycles 3:
    # a cycle is 3 latent updates + 1 answer update of the one network; the last cycle (4 calls) has gradient.
    cfg = dict(batch_size=2, seq_len=4, vocab_size=5, hidden_size=8, expansion=4, puzzle_emb_ndim=8,
               puzzle_emb_len=2, H_layers=0, L_layers=1, H_cycles=2, L_cycles=3, num_heads=2, no_ACT_continue=True)
    S, h, inner = 6, 8, 256
    attention_block = 2 * (S * (2 * h * 4 * h + 2 * h * 3 * inner) + 2 * (2 * S * S * h))
    heads = 2 * (2 * S * h * 5) + 2 * (2 * h * 2)
    flops = tt.flop_breakdown(model_of(TRM, **cfg), 2)
    assert flops["segment"] == 8 * attention_block + heads
    # 4 no-grad calls, then 4 calls and the heads forward and backward; no Q-target segment.
    assert flops["step"] == 4 * attention_block + 3 * (4 * attention_block + heads)
    # mlp_t: the token SwiGLU over S = 6 positions (inner round(4*6*2/3) = 16 -> 256) replaces attention.
    mlp_block = 2 * (h * 2 * S * 3 * 256 + S * 2 * h * 3 * inner)
    assert model_of(TRM, **cfg, mlp_t=True).inner.L_level.layers[0].flops(2, S) == mlp_block
    # HRM's halting (no_ACT_continue false) adds the extra no-grad segment.
    assert tt.flop_breakdown(model_of(TRM, **{**cfg, "no_ACT_continue": False}), 2)["step"] == flops["step"] + \
        flops["segment"]


def test_urm_flop_formula_by_hand():
    # URM, hidden 8, 2 heads, seq 4 + 1 prefix position (S = 5), batch 2, vocab 5, two blocks, H_cycles 2,
    # L_cycles 3: a segment is 6 passes through both blocks, the last 3 with gradient. A block adds to the
    # attention block the convolution: kernel 2 over the padded S + 1 outputs of each of the inner 256 channels.
    cfg = dict(batch_size=2, seq_len=4, vocab_size=5, hidden_size=8, expansion=4, puzzle_emb_ndim=8, num_layers=2,
               H_cycles=2, L_cycles=3, num_heads=2, loops=2)
    S, h, inner = 5, 8, 256
    block = 2 * (S * (2 * h * 4 * h + 2 * h * 3 * inner) + 2 * (2 * S * S * h) + 2 * 2 * inner * (S + 1))
    heads = 2 * (2 * S * h * 5) + 2 * (2 * h * 2)
    flops = tt.flop_breakdown(model_of("urm.urm@URM", **cfg), 2)
    assert flops["no_grad"] == 3 * 2 * block and flops["grad_forward"] == 3 * 2 * block + heads
    assert flops["step"] == 6 * block + 3 * (6 * block + heads)  # no continue target


def test_trm_presets_build_the_published_models():
    for preset, parameters in (("trm-sudoku", 6_828_034), ("trm-sudoku-mlp", 5_028_866)):
        config, metadata = tt.build_config(preset, "cpu", compile_model=False, batch_size=2)
        assert config.arch.name.startswith("recursive_reasoning.trm@") and config.ema
        model = tt.build_state(config, metadata, "cpu")[0].model
        assert sum(p.numel() for p in model.parameters()) == parameters
    config, metadata = tt.build_config("trm-arc", "cpu", compile_model=False)
    assert (config.global_batch_size, metadata.seq_len, config.arch.extra["L_cycles"]) == (192, 900, 4)
    # The CLI runs a TRM preset on the CPU (at batch 2: the published shapes are GPU-sized).
    _, summary = run_script("train_throughput.py", "--preset", "trm-sudoku-mlp", "--batch-size", "2", "--device",
                            "cpu", "--steps", "1", "--repeats", "1", "--warmup", "0", "--log-intervals", "1",
                            "--threads", "1", "--peak-size", "256")
    assert summary["model"] == "TinyRecursiveReasoningModel_ACTV1" and summary["parameters"] == 5_028_866
    assert summary["ema"] is True and summary["steps_per_s"] > 0


@pytest.mark.parametrize("preset, arch", [
    ("tiny", {}),
    ("tiny", {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1", "H_layers": 0,
              "puzzle_emb_len": 3, "no_ACT_continue": True}),
    ("tiny", {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1", "H_layers": 0, "mlp_t": True,
              "pos_encodings": "none", "no_ACT_continue": False}),
])
def test_flop_formula_matches_torch_flop_counter_on_a_real_step(preset, arch):
    """The analytic count equals what torch's FlopCounterMode sees in one eager train_batch step."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    config, metadata = tt.build_config(preset, "cpu", compile_model=False, batch_size=4, arch_overrides=arch)
    state, info = tt.build_state(config, metadata, "cpu")
    batch = tt.make_batches(config, metadata, count=1, pin=False)[0]
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:  # math: matmuls it can see
        train_batch(config, state, batch, info)
    assert counter.get_total_flops() == tt.flops_per_step(state.model.model)


def test_never_variant_runs_the_trainers_step_without_logging_then_checks_the_sums():
    config, metadata = tt.build_config("tiny", "cpu", compile_model=False, batch_size=8)
    state, info = tt.build_state(config, metadata, "cpu")
    batches = tt.make_batches(config, metadata, count=2, pin=False)
    quiet = tt.with_log_interval(config, None)
    assert quiet.log_interval > 10 ** 6 and config.log_interval == 1  # the preset keeps the trainer's default
    tt.train_steps(quiet, state, info, batches, 3)
    assert state.step == state.metrics.steps == 3  # train_batch ran and has logged nothing yet
    tt.flush_pending_metrics(quiet, state, info)
    assert state.metrics.sums is None and state.metrics.steps == 0
    # A NaN loss among the pending sums stops the benchmark as it would stop training at the next log.
    tt.train_steps(quiet, state, info, batches, 1)
    state.metrics.sums["lm_loss"] = torch.tensor(float("nan"), dtype=torch.float64)
    with pytest.raises(TrainingDivergedError):
        tt.flush_pending_metrics(quiet, state, info)


def test_log_intervals_flag_is_checked():
    assert tt.parse_args(["--log-intervals", "1,10,never"]).log_intervals == [1, 10, None]
    for bad in ("0", "1,1", "x", ""):
        with pytest.raises(SystemExit):
            tt.parse_args(["--log-intervals", bad])


def test_loader_benchmark_on_a_small_synthetic_dataset(tmp_path):
    lines, summary = run_script("loader_throughput.py", "--shape", "sudoku", "--groups", "50",
                                "--puzzles-per-group", "3", "--batch-size", "32", "--batches", "5",
                                "--workdir", str(tmp_path), "--modes", "direct,dataloader")
    assert summary["seq_len"] == 81 and summary["batch_size"] == 32
    for mode in ("direct", "dataloader"):
        assert_positive_finite(summary["modes"][mode], ("samples_per_s", "batches_per_s"))
    assert summary["samples_per_s"] == summary["modes"]["direct"]["samples_per_s"]


def test_loader_dataset_writer_produces_a_loadable_dataset(tmp_path):
    path = lt.write_synthetic_dataset(str(tmp_path / "d"), seq_len=9, vocab_size=5, groups=4, puzzles_per_group=2,
                                      examples_per_puzzle=3, num_puzzle_identifiers=9, seed=0)
    from dataset.puzzle_dataset import PuzzleDataset, PuzzleDatasetConfig
    loader = PuzzleDataset(PuzzleDatasetConfig(seed=0, dataset_path=path, global_batch_size=4, test_set_mode=False,
                                               epochs_per_iter=2, rank=0, num_replicas=1), split="train")
    batches = list(loader)
    assert batches and all(b["inputs"].shape == (4, 9) for _, b, _ in batches)


@pytest.mark.parametrize("mode", [[], ["--foreground", "--ema"]])
def test_checkpoint_cost_on_the_tiny_preset(tmp_path, mode):
    lines, summary = run_script("checkpoint_cost.py", "--preset", "tiny", "--repeats", "1", "--dir", str(tmp_path),
                                *mode)
    assert set(summary["files"]) == {"step_N", "step_N.state", "step_N.rank0"}
    assert summary["total_bytes"] == sum(summary["files"].values()) > 0
    assert 0 < summary["blocking_s"] <= summary["total_s"]
    assert summary["background"] == (not mode) and summary["ema"] == bool(mode)
    assert not list(tmp_path.iterdir())  # cleaned up
