"""Training throughput of the trainer (HRM, TRM, URM): steps/s, samples/s, tokens/s, peak memory and MFU.

    python benchmarks/train_throughput.py --preset tiny --device cpu          # CPU; add --threads 1 if it is busy
    python benchmarks/train_throughput.py --preset sudoku                     # published HRM Sudoku, one GPU
    python benchmarks/train_throughput.py --preset arc --out results.jsonl    # HRM ARC shape (seq 900, batch 96)
    python benchmarks/train_throughput.py --preset trm-sudoku-mlp             # TRM's Sudoku MLP run, one GPU

The model, its loss head and both optimizers are built by the trainer's own helpers
(`training.build.init_train_state`), and the step that is timed is `training.loop.train_batch` itself, on synthetic batches of the preset's shape (a few batches,
generated once, cycled; pinned host memory on CUDA, so each step pays the same asynchronous host-to-device copy as
with a pinned prefetching loader). No dataset is read: the loader is measured on its own by
benchmarks/loader_throughput.py.

Log intervals (``--log-intervals``, default ``1,never``): the same step, one after the other on the same model,
with the config's ``log_interval`` set to each:
  1      the trainer's default: every step reduces the metrics (``.tolist()``) and checks the loss is finite
         (``bool()``), two host syncs per step.
  N      those syncs every N steps only (their cost divided by N).
  never  an interval past the last step: the timed steps never wait for the device. The metric sums left pending
         are read and checked for NaN/Inf once, after the timed windows.
The gap between 1 and never is what the per-step syncs cost (nothing measurable on a CPU, where nothing is
asynchronous).

Timing: ``--warmup`` steps first (they include torch.compile's compilation), then ``--repeats`` timed windows of
``--steps`` steps each; CUDA events around each window (host clock after a synchronize elsewhere); the figures
are from the median window. With torch.compile the dynamo counters are read before and after the timed windows:
any graph compiled while timing is reported as ``recompiles_during_timing`` (it must be 0).

FLOPs (matmul FLOPs only, 2·m·n·k per matmul, and the convolution of URM's MLP, counted analytically from the
model; elementwise work, norms, softmax and the loss are not counted). Each block part counts its own
(models/layers.py `flops`); with B = batch (per GPU), P = prefix positions (puzzle_emb_len, or
ceil(puzzle_emb_ndim / hidden) when that is 0), S = seq_len + P, h = hidden, I = the MLP's inner width
(round(expansion·h·2/3) rounded up to 256), I_S = the same rule applied to S, V = vocab:

    F_block = B · [ 2·S·h·(2I + I)               channel SwiGLU: gate_up, down projections
                  (+ 2·2·I·(S + 1)                URM's depthwise convolution, kernel 2)
                  + 2·S·h·(3h + h) + 2·2·S²·h ]  attention: qkv, o projections, QK^T and AV (all heads)
                  or, with mlp_t, 2·h·S·(2I_S + I_S)   the token-mixing SwiGLU instead of attention
    F_heads = 2·B·S·h·V + 2·B·h·2                lm_head (on all S positions, prefix sliced off) + q_head

Each core lists its module calls of one segment and which of them get gradients (models/act.py
`segment_calls`):
    HRM: H_cycles·L_cycles calls of L and H_cycles of H; the last L and the last H call with gradient.
    TRM: H_cycles·(L_cycles + 1) calls of its one network L; the last L_cycles + 1 (the last cycle) with gradient.
    URM: H_cycles·L_cycles passes through its num_layers blocks; the last L_cycles with gradient.

    F_segment = Σ calls · F_module + F_heads                                 one forward segment
    FLOPs per training step
      = F_segment − F_heads − F_grad_calls      the calls under no_grad (forward only)
      + 3·(F_grad_calls + F_heads)              the calls with gradient and the heads: forward + backward
                                                (2× forward: input and weight gradients)
      + F_segment                               the extra no-grad segment for the target Q value (HRM's halting;
                                                not with no_ACT_continue, TRM's default)

For the published Sudoku setting (B 768, S 82, h 512, I 1536, 4+4 layers, H2 L2) this is 2.82e13 FLOPs per step,
i.e. 16 module-call equivalents of F_L. MFU = flops_per_step · steps_per_s / peak_flops, where peak_flops is
measured in the same run: an N×N×N matmul in the model's forward dtype (bf16 on CUDA, N = 8192; fp32 on CPU,
N = 1024), best of three timed windows, before and after the steps (the higher is used). ``--peak-flops``
overrides it (e.g. a datasheet figure). On CUDA the JSON also has ``mfu_nominal`` (datasheet bf16 peak) and, per
variant, ``sync_points_per_step``: where 2 extra steps synchronize with the host (torch.cuda sync debug mode).

The last line printed is one JSON object (also appended to ``--out``): steps_per_s, samples_per_s, tokens_per_s,
peak_mem_gib, mfu, device (the headline figures are the first log interval's), plus the configuration and every
variant's figures under ``variants``, keyed "log_interval=<N or never>".
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from contextlib import nullcontext
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from dataset.common import PuzzleDatasetMetadata
from models.common import compile_model
from training.build import init_train_state
from training.config import PretrainConfig, validate_config
from training.distributed import single_process
from training.loop import check_finite, train_batch
from utils.device import default_forward_dtype, resolve_device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------------------------------------------
# Presets. Anything not listed comes from config/cfg_pretrain.yaml and the preset's config/arch/<arch_file>.yaml
# (default hrm_v1: the published HRM architecture, hidden 512, 8 heads, 4+4 layers, H2 L2, halt 16, rope,
# puzzle_emb_ndim = hidden; trm: TRM's, hidden 512, 2 layers, H3 L6, puzzle_emb_len 16, no_ACT_continue).

# TRM's published runs (its README): weight decay 1.0 and EMA on; the cycles of each task.
TRM_SUDOKU = dict(arch_file="trm", global_batch_size=768, seq_len=81, vocab_size=11, num_puzzle_identifiers=1,
                  lr=1e-4, puzzle_emb_lr=1e-4, weight_decay=1.0, puzzle_emb_weight_decay=1.0, ema=True,
                  arch=dict(L_layers=2, H_cycles=3, L_cycles=6))

URM_RUN = dict(arch_file="urm", ema=True, arch=dict(loops=16, H_cycles=2, L_cycles=6, num_layers=4))

PRESETS: Dict[str, Dict[str, Any]] = {
    # Small enough for a CPU: a 4x4-Sudoku-like shape.
    "tiny": dict(global_batch_size=32, seq_len=16, vocab_size=6, num_puzzle_identifiers=64,
                 arch=dict(hidden_size=64, num_heads=4, H_layers=2, L_layers=2, expansion=4, puzzle_emb_ndim=64,
                           halt_max_steps=4)),
    # Published Sudoku-Extreme setting (batch 768 on one GPU; the hyperparameters of the HRM README).
    "sudoku": dict(global_batch_size=768, seq_len=81, vocab_size=11, num_puzzle_identifiers=1,
                   lr=7e-5, puzzle_emb_lr=7e-5, weight_decay=1.0, puzzle_emb_weight_decay=1.0),
    # Published ARC setting, per GPU (768 global over 8 GPUs). ~1M puzzle identifiers: ~1000 tasks x 1000
    # augmentations (the table is 2 GB of fp32; --num-puzzle-ids to change).
    "arc": dict(global_batch_size=96, seq_len=900, vocab_size=12, num_puzzle_identifiers=1_000_001),
    # Maze 30x30, per GPU.
    "maze": dict(global_batch_size=96, seq_len=900, vocab_size=6, num_puzzle_identifiers=1),
    # TRM's Sudoku-Extreme runs, one GPU: attention with rope (74.7% in the paper) and mlp_t without positions
    # (87.4%).
    "trm-sudoku": TRM_SUDOKU,
    "trm-sudoku-mlp": {**TRM_SUDOKU, "arch": {**TRM_SUDOKU["arch"], "mlp_t": True, "pos_encodings": "none"}},
    # TRM's ARC-AGI run per GPU (768 global over 4 GPUs), L_cycles 4, ~1M puzzle identifiers.
    "trm-arc": dict(arch_file="trm", global_batch_size=192, seq_len=900, vocab_size=12, num_puzzle_identifiers=1_000_001,
                    ema=True, arch=dict(L_layers=2, H_cycles=3, L_cycles=4)),
    # URM's published runs (its scripts): ARC-AGI-1 at 768 over 8 GPUs (96 per GPU), ~1M puzzle identifiers
    # (ARC-AGI-1 with ConceptARC, 1000 augmentations); Sudoku at 128 over 8 GPUs (16 per GPU). EMA on in both;
    # ARC-AGI-2's run is the ARC-AGI-1 shape with use_muon (--muon).
    "urm-arc1": {**URM_RUN, "global_batch_size": 96, "seq_len": 900, "vocab_size": 12,
                 "num_puzzle_identifiers": 1_000_001},
    "urm-sudoku": {**URM_RUN, "global_batch_size": 16, "seq_len": 81, "vocab_size": 11, "num_puzzle_identifiers": 1,
                   "lr": 1e-4, "puzzle_emb_lr": 1e-4, "weight_decay": 1.0, "puzzle_emb_weight_decay": 1.0},
}

DATA_KEYS = ("seq_len", "vocab_size", "num_puzzle_identifiers")

# The trainer's total_steps here, and the log interval of the "never" variant: a step this process never reaches.
BEYOND_LAST_STEP = 10 ** 9
NEVER = "never"

# Datasheet dense bf16 tensor-core peaks (no sparsity), for reference next to the measured peak.
NOMINAL_BF16_PEAKS = (("H200", 989.4e12), ("H100 PCIe", 756.0e12), ("H100 NVL", 835.0e12), ("H100", 989.4e12),
                      ("GH200", 989.4e12), ("A100", 312.0e12), ("L40S", 362.0e12), ("B200", 2250.0e12))


def load_base_config(arch_file: str = "hrm_v1") -> Dict[str, Any]:
    """config/cfg_pretrain.yaml with config/arch/<arch_file>.yaml as `arch`, interpolations resolved (no Hydra)."""
    from omegaconf import OmegaConf

    base = OmegaConf.load(os.path.join(REPO, "config", "cfg_pretrain.yaml"))
    for key in ("defaults", "hydra"):
        base.pop(key, None)
    base.arch = OmegaConf.load(os.path.join(REPO, "config", "arch", f"{arch_file}.yaml"))
    return OmegaConf.to_container(base, resolve=True)


def build_config(preset: str, device: str, compile_model: bool, batch_size: Optional[int] = None,
                 dtype: Optional[str] = None, num_puzzle_ids: Optional[int] = None,
                 arch_overrides: Optional[Dict[str, Any]] = None, overrides: Optional[Dict[str, Any]] = None):
    """(PretrainConfig, PuzzleDatasetMetadata) of a preset: the trainer's config tree, validated as pretrain.py does."""
    spec = json.loads(json.dumps(PRESETS[preset]))  # deep copy
    raw = load_base_config(spec.pop("arch_file", "hrm_v1"))
    data = {k: spec.pop(k) for k in DATA_KEYS}
    if num_puzzle_ids is not None:
        data["num_puzzle_identifiers"] = num_puzzle_ids
    raw["arch"].update(spec.pop("arch", {}))
    raw["arch"].update(arch_overrides or {})
    if dtype is not None:
        raw["arch"]["forward_dtype"] = dtype
    raw.update(spec)
    if batch_size is not None:
        raw["global_batch_size"] = batch_size
    raw.update(data_path=f"<synthetic {preset}>", device=device, compile=compile_model, logger="none",
               eval_interval=None, eval_save_outputs=[], checkpoint_path=None, load_checkpoint=None)
    raw.update(overrides or {})
    raw = {k: v for k, v in raw.items() if k in PretrainConfig.model_fields}  # tolerate fields removed later
    config = validate_config(raw)
    metadata = PuzzleDatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, sets=["all"],
                                     total_groups=config.global_batch_size, mean_puzzle_examples=1.0, **data)
    return config, metadata


# ---------------------------------------------------------------------------------------------------------------
# FLOPs


def flop_breakdown(model, batch_size: int) -> Dict[str, int]:
    """Matmul FLOPs of one training step of an ACT model on `batch_size` rows (see the module docstring), with
    the terms that make it up. The core lists its module calls per segment (models/act.py `segment_calls`) and each
    block part counts its own FLOPs (models/layers.py), so any core is counted without a formula of its own."""
    segment = model.inner.segment_flops(batch_size)
    grad_forward = segment["grad"] + segment["heads"]
    whole_segment = segment["no_grad"] + grad_forward
    target_q_segment = 0 if model.config.no_ACT_continue else whole_segment
    step = segment["no_grad"] + 3 * grad_forward + target_q_segment
    return dict(heads=segment["heads"], segment=whole_segment, no_grad=segment["no_grad"], grad_forward=grad_forward,
                grad_backward=2 * grad_forward, target_q_segment=target_q_segment, step=step)


def flops_per_step(model) -> int:
    """FLOPs of one training step of an ACT model, at the batch size it was built for."""
    return flop_breakdown(model, model.config.batch_size)["step"]


# ---------------------------------------------------------------------------------------------------------------
# Timing and device helpers


class DeviceTimer:
    """Seconds between start() and stop(): CUDA events on CUDA (stream order), the host clock elsewhere."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device

    def start(self) -> None:
        synchronize(self.device)
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            return self._start.elapsed_time(end) / 1000.0
        return time.perf_counter() - self._t0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, size: Optional[int] = None,
                        window_s: float = 0.25, windows: int = 3) -> Dict[str, Any]:
    """Best-of-`windows` rate of an N×N×N matmul in `dtype` on `device` (FLOP/s), random inputs."""
    if size is None:
        size = 8192 if device.type == "cuda" else 1024
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=gen, device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    flops = 2 * size ** 3
    timer = DeviceTimer(device)
    for _ in range(2):
        torch.mm(a, b, out=out)
    timer.start()
    torch.mm(a, b, out=out)
    one = max(timer.stop(), 1e-6)
    iters = max(1, int(window_s / one))
    best = 0.0
    for _ in range(windows):
        timer.start()
        for _ in range(iters):
            torch.mm(a, b, out=out)
        best = max(best, flops * iters / timer.stop())
    del a, b, out
    return dict(peak_flops=best, peak_source=f"measured {size}x{size}x{size} {str(dtype).removeprefix('torch.')} "
                                              f"matmul, best of {windows} x {iters}")


def nominal_peak(device_name: str) -> Optional[float]:
    for key, value in NOMINAL_BF16_PEAKS:
        if key in device_name:
            return value
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> Dict[str, Any]:
    """CUDA: max allocated since the last reset. Elsewhere: the process's peak resident set (all of it)."""
    if device.type == "cuda":
        return dict(peak_mem_gib=torch.cuda.max_memory_allocated(device) / 2 ** 30,
                    peak_mem_reserved_gib=torch.cuda.max_memory_reserved(device) / 2 ** 30,
                    peak_mem_kind="torch.cuda.max_memory_allocated")
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    scale = 1 if sys.platform.startswith("linux") else 1 / 1024  # bytes on macOS
    return dict(peak_mem_gib=rss_kib * scale / 2 ** 20, peak_mem_kind="process max RSS")


def dynamo_counters() -> Dict[str, int]:
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover
        return {}
    return dict(frames=int(counters["frames"].get("total", 0)),
                unique_graphs=int(counters["stats"].get("unique_graphs", 0)),
                graph_breaks=int(sum(counters["graph_break"].values())))


def graph_break_reasons(limit: int = 5) -> List[str]:
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover
        return []
    return [f"{' '.join(reason.split())[:200]} (x{n})" for reason, n in list(counters["graph_break"].items())[:limit]]


def load_average() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


# ---------------------------------------------------------------------------------------------------------------
# Synthetic data


def make_batches(config: PretrainConfig, metadata: PuzzleDatasetMetadata, count: int, pin: bool, seed: int = 0
                 ) -> List[Dict[str, torch.Tensor]]:
    """`count` host batches of the trainer's shape: int32 tokens in [1, vocab), every label valid."""
    gen = torch.Generator().manual_seed(seed)
    B, L, V, N = config.global_batch_size, metadata.seq_len, metadata.vocab_size, metadata.num_puzzle_identifiers
    batches = []
    for _ in range(count):
        batch = dict(inputs=torch.randint(1, V, (B, L), generator=gen, dtype=torch.int32),
                     labels=torch.randint(1, V, (B, L), generator=gen, dtype=torch.int32),
                     puzzle_identifiers=(torch.randint(1, N, (B,), generator=gen, dtype=torch.int32) if N > 1
                                         else torch.zeros(B, dtype=torch.int32)))
        batches.append({k: v.pin_memory() for k, v in batch.items()} if pin else batch)
    return batches


# ---------------------------------------------------------------------------------------------------------------
# Building the training state


CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def build_state(config: PretrainConfig, metadata: PuzzleDatasetMetadata, device: str,
                compile_mode: Optional[str] = None):
    """(state, info) through the trainer's helpers; `compile_mode` compiles the model in place with that mode
    instead of the trainer's default one."""
    info = single_process(resolve_device(device))
    torch.manual_seed(config.seed)
    if compile_mode is not None and config.compile:
        state = init_train_state(config.model_copy(update=dict(compile=False)), metadata, info, BEYOND_LAST_STEP)
        compile_model(state.model, dynamic=False, mode=compile_mode)
    else:
        state = init_train_state(config, metadata, info, BEYOND_LAST_STEP)  # never reaches its end (nor its log)
    return state, info


def step_marker(compile_mode: Optional[str]) -> Callable[[], None]:
    """What to call before each training step: with CUDA graphs, the start of a new graph generation (the carry
    a step returns is the next step's input, so a step must not overwrite the previous one's outputs)."""
    if compile_mode in CUDA_GRAPH_MODES:
        return torch.compiler.cudagraph_mark_step_begin
    return lambda: None


# ---------------------------------------------------------------------------------------------------------------
# Measurement: every step is training.loop.train_batch; a variant is the config's log_interval


def variant_name(log_interval: Optional[int]) -> str:
    return f"log_interval={log_interval or NEVER}"


def with_log_interval(config: PretrainConfig, log_interval: Optional[int]) -> PretrainConfig:
    """The config with log_interval set; None: past the last step this process runs (no log, no host sync)."""
    return config.model_copy(update=dict(log_interval=log_interval or BEYOND_LAST_STEP))


def train_steps(config: PretrainConfig, state, info, batches, count: int, mark: Callable[[], None] = lambda: None
                ) -> None:
    """`count` steps of training.loop.train_batch, cycling the synthetic batches (`mark`: step_marker)."""
    for _ in range(count):
        mark()
        train_batch(config, state, batches[state.step % len(batches)], info)


def flush_pending_metrics(config: PretrainConfig, state, info) -> None:
    """Check the metric sums train_batch has not logged yet for NaN/Inf, as its next log would (one host sync,
    outside the timed windows), and drop them so that the next variant starts clean."""
    sums, _ = state.metrics.take()
    if sums:
        check_finite(sums, state.step, config.log_interval, info)


def time_variant(config: PretrainConfig, state, info, batches, steps: int, repeats: int,
                 warmup: int, mark: Callable[[], None]) -> Dict[str, Any]:
    device = info.device
    t0 = time.perf_counter()
    first_step_s = None
    if warmup:
        train_steps(config, state, info, batches, 1, mark)
        synchronize(device)
        first_step_s = time.perf_counter() - t0
        train_steps(config, state, info, batches, warmup - 1, mark)
    synchronize(device)
    warmup_s = time.perf_counter() - t0

    counters_before = dynamo_counters()
    reset_peak_memory(device)
    timer = DeviceTimer(device)
    windows = []
    for _ in range(repeats):
        timer.start()
        train_steps(config, state, info, batches, steps, mark)
        windows.append(timer.stop())
    counters_after = dynamo_counters()
    memory = peak_memory_gib(device)
    flush_pending_metrics(config, state, info)

    median = statistics.median(windows)
    steps_per_s = steps / median
    B, L = config.global_batch_size, state.model.model_config.seq_len
    return dict(
        log_interval=config.log_interval if config.log_interval < BEYOND_LAST_STEP else NEVER,
        steps_per_s=steps_per_s, samples_per_s=steps_per_s * B, tokens_per_s=steps_per_s * B * L,
        ms_per_step=1000.0 * median / steps,
        ms_per_step_min=1000.0 * min(windows) / steps, ms_per_step_max=1000.0 * max(windows) / steps,
        warmup_s=warmup_s, first_step_s=first_step_s,
        # Frames (re)compiled and new graphs while timing; both stay 0 when nothing recompiles.
        recompiles_during_timing=max(counters_after.get(k, 0) - counters_before.get(k, 0)
                                     for k in ("frames", "unique_graphs")) if counters_before else 0,
        **memory)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    device = resolve_device(args.device)
    compile_model = args.compile if args.compile is not None else (device.type == "cuda" or bool(args.compile_mode))
    config, metadata = build_config(args.preset, str(device), compile_model, batch_size=args.batch_size,
                                    dtype=args.dtype, num_puzzle_ids=args.num_puzzle_ids,
                                    overrides={**(dict(ema=True) if args.ema else {}),
                                               **(dict(use_muon=True) if args.muon else {})})
    if args.threads:
        torch.set_num_threads(args.threads)

    forward_dtype_name = config.arch.extra.get("forward_dtype") or default_forward_dtype(device)
    peak_before = None if args.peak_flops else measure_matmul_peak(device, getattr(torch, forward_dtype_name),
                                                                   size=args.peak_size)
    state, info = build_state(config, metadata, str(device), compile_mode=args.compile_mode)
    mark = step_marker(args.compile_mode)
    model_config = state.model.model_config
    forward_dtype = getattr(torch, model_config.forward_dtype)
    flops = flop_breakdown(state.model.model, config.global_batch_size)
    batches = make_batches(config, metadata, count=args.num_batches, pin=device.type == "cuda" and not args.pageable)
    variants = {variant_name(n): with_log_interval(config, n) for n in args.log_intervals}

    sdpa = nullcontext()
    if args.sdpa_backend != "auto":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        sdpa = sdpa_kernel([getattr(SDPBackend, args.sdpa_backend.upper())])

    results: Dict[str, Dict[str, Any]] = {}
    with sdpa:
        for i, (name, variant_config) in enumerate(variants.items()):
            results[name] = time_variant(variant_config, state, info, batches, args.steps, args.repeats,
                                         args.warmup if i == 0 else max(1, min(args.warmup, 3)), mark)
        if info.device.type == "cuda" and not args.no_sync_check:
            for name, variant_config in variants.items():
                results[name]["sync_points_per_step"] = find_sync_points(variant_config, state, info, batches, mark)
        if args.profile:
            profile_steps(args.profile, next(iter(variants.values())), state, info, batches, mark)

    if args.peak_flops:
        peak = dict(peak_flops=args.peak_flops, peak_source="--peak-flops")
    else:  # measured before and after the training steps; the better of the two (clocks, other load)
        peak_after = measure_matmul_peak(device, forward_dtype, size=args.peak_size)
        peak = dict(max(peak_before, peak_after, key=lambda p: p["peak_flops"]))
        peak["peak_source"] += (f"; before / after the run {peak_before['peak_flops'] / 1e12:.4g} / "
                                f"{peak_after['peak_flops'] / 1e12:.4g} TFLOP/s, the higher used")
    name = device_name(device)
    nominal = nominal_peak(name) if device.type == "cuda" and forward_dtype == torch.bfloat16 else None
    for fig in results.values():
        fig["achieved_flops"] = flops["step"] * fig["steps_per_s"]
        fig["mfu"] = fig["achieved_flops"] / peak["peak_flops"]
        if nominal:
            fig["mfu_nominal"] = fig["achieved_flops"] / nominal

    head_name = next(iter(results))
    head = results[head_name]
    dense = [opt for opt in state.optimizers if type(opt).__module__ != "models.sparse_embedding"]
    summary = dict(
        steps_per_s=head["steps_per_s"], samples_per_s=head["samples_per_s"], tokens_per_s=head["tokens_per_s"],
        peak_mem_gib=head["peak_mem_gib"], mfu=head["mfu"], device=str(device), device_name=name,
        torch=torch.__version__, cuda=torch.version.cuda, preset=args.preset, model=type(state.model.model).__name__,
        variant=head_name,
        log_intervals=[fig["log_interval"] for fig in results.values()],
        compile=compile_model, compile_mode=args.compile_mode if compile_model else None,
        ema=bool(getattr(config, "ema", False)), forward_dtype=model_config.forward_dtype,
        batch_size=config.global_batch_size, seq_len=model_config.seq_len,
        num_puzzle_identifiers=model_config.num_puzzle_identifiers, sdpa_backend=args.sdpa_backend,
        optimizer=" + ".join(f"{type(opt).__module__}.{type(opt).__name__}" for opt in dense),
        host_batches="pageable" if args.pageable or device.type != "cuda" else "pinned",
        parameters=sum(p.numel() for p in state.model.parameters()),
        flops_per_step=flops["step"], flop_breakdown=flops, peak_flops=peak["peak_flops"],
        peak_source=peak["peak_source"], nominal_peak_flops=nominal, steps=args.steps, repeats=args.repeats,
        warmup=args.warmup, threads=torch.get_num_threads(), load_avg=load_average(),
        recompiles_during_timing=sum(v["recompiles_during_timing"] for v in results.values()),
        dynamo=dynamo_counters() if compile_model else None,
        graph_break_reasons=graph_break_reasons() if compile_model else None,
        command="python " + " ".join([os.path.relpath(__file__, REPO)] + list(args.argv)),
        variants=results)
    return summary


def find_sync_points(config, state, info, batches, mark: Callable[[], None], steps: int = 2
                     ) -> Optional[Dict[str, float]]:
    """CUDA only: where the step synchronizes with the host (torch.cuda.set_sync_debug_mode), per step.

    Keys are "file:line" of the Python line that issued the synchronizing operation (.item(), .tolist(),
    bool(tensor), unique/nonzero, copies from pageable memory...).
    """
    if info.device.type != "cuda":
        return None
    import warnings

    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_steps(config, state, info, batches, steps, mark)
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    flush_pending_metrics(config, state, info)
    points: Dict[str, float] = {}
    for w in caught:
        if "synchroniz" in str(w.message):
            where = f"{os.path.relpath(w.filename, REPO)}:{w.lineno}"
            points[where] = points.get(where, 0.0) + 1.0 / steps
    return points


def profile_steps(path: str, config, state, info, batches, mark: Callable[[], None], steps: int = 5) -> None:
    """A torch.profiler trace (Chrome format) of a few steps, and the top kernels on stdout."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if info.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train_steps(config, state, info, batches, steps, mark)
        synchronize(info.device)
    flush_pending_metrics(config, state, info)
    prof.export_chrome_trace(path)
    key = "self_cuda_time_total" if info.device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=20))


def format_table(summary: Dict[str, Any]) -> str:
    lines = [
        f"training throughput — preset {summary['preset']} ({summary['model']}), batch {summary['batch_size']}, seq "
        f"{summary['seq_len']}, {summary['forward_dtype']}, compile={summary['compile']}"
        + (f" ({summary['compile_mode']})" if summary['compile_mode'] else ""),
        f"device {summary['device']} ({summary['device_name']}), torch {summary['torch']}, "
        f"{summary['threads']} threads, load {summary['load_avg']}",
        f"parameters {summary['parameters']:,}; FLOPs/step {summary['flops_per_step']:.4g}; peak "
        f"{summary['peak_flops'] / 1e12:.3g} TFLOP/s ({summary['peak_source']})"
        + (f"; datasheet {summary['nominal_peak_flops'] / 1e12:.4g}" if summary['nominal_peak_flops'] else ""),
        "",
        f"{'variant':<18} {'steps/s':>9} {'samples/s':>11} {'tokens/s':>12} {'ms/step':>9} {'min–max':>15} "
        f"{'peak GiB':>9} {'MFU':>7}",
    ]
    for name, fig in summary["variants"].items():
        lines.append(f"{name:<18} {fig['steps_per_s']:>9.3f} {fig['samples_per_s']:>11.1f} "
                     f"{fig['tokens_per_s']:>12.0f} {fig['ms_per_step']:>9.2f} "
                     f"{fig['ms_per_step_min']:>7.2f}–{fig['ms_per_step_max']:<7.2f} {fig['peak_mem_gib']:>9.3f} "
                     f"{100 * fig['mfu']:>6.2f}%")
    for name, fig in summary["variants"].items():
        if fig.get("sync_points_per_step") is not None:
            points = ", ".join(f"{k} x{v:g}" for k, v in fig["sync_points_per_step"].items()) or "none"
            lines.append(f"host syncs per step ({name}): {points}")
    load, cores = summary["load_avg"], os.cpu_count() or 1
    if summary["device"] == "cpu" and load and load[0] >= cores:
        lines.append(f"note: load {load[0]} on {cores} cores: CPU timings are noisy, and more than one torch thread "
                     f"can stall in OpenMP waits; --threads 1 is steadier on a busy machine")
    if summary["compile"]:
        lines.append(f"dynamo: {summary['dynamo']}; recompiles while timing: {summary['recompiles_during_timing']}")
        for reason in summary["graph_break_reasons"] or []:
            lines.append(f"  graph break: {reason}")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--steps", type=int, default=10, help="steps per timed window")
    p.add_argument("--repeats", type=int, default=5, help="timed windows; figures from the median")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 compiled, 3 eager)")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="torch.compile the model (default: on for CUDA, off elsewhere)")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode (default: the trainer's own compile, mode 'default'); e.g. "
                        "reduce-overhead (CUDA graphs), max-autotune-no-cudagraphs")
    p.add_argument("--batch-size", type=int, default=None, help="override the preset's (global = per GPU) batch")
    p.add_argument("--num-puzzle-ids", type=int, default=None, help="override the puzzle-embedding table rows")
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default=None,
                   help="forward dtype (default: bfloat16 on CUDA, float32 elsewhere)")
    p.add_argument("--log-intervals", default=f"1,{NEVER}",
                   help="comma-separated config log_interval values to time train_batch with, one after "
                        f"the other (1: host syncs every step; N: every N steps; {NEVER}: none while timing); "
                        "the first gives the headline figures")
    p.add_argument("--sdpa-backend", choices=("auto", "flash_attention", "efficient_attention", "cudnn_attention",
                                              "math"), default="auto")
    p.add_argument("--ema", action="store_true", help="train with the weight EMA on (config ema=true)")
    p.add_argument("--muon", action="store_true", help="train with Muon (config use_muon=true; URM's ARC-AGI-2)")
    p.add_argument("--pageable", action="store_true", help="CUDA: feed pageable (not pinned) host batches")
    p.add_argument("--num-batches", type=int, default=4, help="distinct synthetic batches, cycled")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    p.add_argument("--peak-flops", type=float, default=None, help="divide by this peak instead of measuring one")
    p.add_argument("--peak-size", type=int, default=None, help="matmul size of the peak measurement")
    p.add_argument("--no-sync-check", action="store_true",
                   help="CUDA: skip listing the host syncs of 2 extra steps per variant (sync debug mode)")
    p.add_argument("--profile", default=None, help="write a torch.profiler Chrome trace of 5 steps to this path")
    p.add_argument("--out", default=None, help="append the JSON line to this file too")
    p.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    words = [w.strip() for w in args.log_intervals.split(",") if w.strip()]
    bad = [w for w in words if w != NEVER and not (w.isdigit() and int(w) > 0)]
    if bad or not words or len(set(words)) < len(words):
        p.error(f"--log-intervals: {bad or words} — give distinct positive integers or {NEVER}, e.g. 1,10,{NEVER}")
    args.log_intervals = [None if w == NEVER else int(w) for w in words]
    if args.warmup is None:
        compiled = args.compile if args.compile is not None else bool(
            (torch.cuda.is_available() and args.device != "cpu") or args.compile_mode)
        args.warmup = 10 if compiled else 3
    if min(args.steps, args.repeats) < 1 or args.warmup < 0:
        p.error("--steps and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    summary = run(args)
    if not args.json_only:
        print(format_table(summary))
    emit_json_line(summary, args.out)
    return summary


def emit_json_line(summary: Dict[str, Any], out: Optional[str]) -> None:
    """The summary as the last line on stdout, and appended to `out` when given (also for loader_throughput.py)."""
    line = json.dumps(summary)
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    main()
