"""The hub path end to end, against a local stand-in for the hub (tests/hub_server.py): the Sudoku and maze
builders' default source, hf:// checkpoints in evaluate.py, the solve CLI and pretrain.py load_checkpoint=, offline
mode, and the one-line errors for a missing repository or file, a hub that does not answer and a reference without
a file name. Every command runs in a subprocess whose HF_ENDPOINT is the local server and whose cache is a
temporary folder."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.helpers import REPO, run_in_repo
from tests.hub_server import FakeHub, hub_env, silent_endpoint
from utils.hub import HubError, HubFile, output_prefix, parse_reference, resolve

# The original HRM builders' sources and the published checkpoints' repository (their names, not ours: pinned here).
SUDOKU_REPO = "sapientinc/sudoku-extreme"
MAZE_REPO = "sapientinc/maze-30x30-hard-1k"
CHECKPOINT_REPO = "sapientinc/HRM-checkpoint-sudoku-extreme"
CHECKPOINT_REF = f"hf://{CHECKPOINT_REPO}/checkpoint"
ALTERNATIVES = "use --input-dir DIR (local train.csv and test.csv) or --generate N"
MAZE_CHARSET = "# SGo"  # token = index + 1


# ------------------------------------------------------------------------------------------------ source files

def sudoku_rows(count: int, first: int):
    """Valid published-format rows: the grid (3(r mod 3) + r div 3 + c) mod 9 + 1 with its digits shifted by k,
    a third of the cells blank."""
    rows = []
    for k in range(first, first + count):
        answer = "".join(str((3 * (r % 3) + r // 3 + c + k) % 9 + 1) for r in range(9) for c in range(9))
        question = "".join("." if (i + k) % 3 == 0 else d for i, d in enumerate(answer))
        rows.append((f"row{k}", question, answer, str(k)))
    return rows


def maze_rows(count: int, first: int):
    """30x30 grids over "# SGo": a wall row on top, the start at (1, 1), the goal k cells further right, the path
    between them marked in the answer."""
    rows = []
    for k in range(first, first + count):
        question = ["#"] * 30 + [" "] * 870
        question[31], question[33 + k] = "S", "G"
        answer = list(question)
        answer[32:33 + k] = "o" * (k + 1)
        rows.append((f"maze{k}", "".join(question), "".join(answer), str(k + 2)))
    return rows


def csv_bytes(rows) -> bytes:
    return ("source,question,answer,rating\n" + "".join(",".join(r) + "\n" for r in rows)).encode()


SOURCES = {
    SUDOKU_REPO: {"train.csv": csv_bytes(sudoku_rows(4, 0)), "test.csv": csv_bytes(sudoku_rows(2, 4))},
    MAZE_REPO: {"train.csv": csv_bytes(maze_rows(3, 0)), "test.csv": csv_bytes(maze_rows(2, 3))},
}

# A published checkpoint's all_config.yaml in the original trainer's layout (its PretrainConfig dumped with sorted
# keys), for a tiny HRM; data_path is where the original run had its data, not here (evaluate.py gets data_path=).
PUBLISHED_CONFIG = {
    "arch": {"H_cycles": 1, "H_layers": 1, "L_cycles": 1, "L_layers": 1, "expansion": 2,
             "halt_exploration_prob": 0.1, "halt_max_steps": 2, "hidden_size": 16,
             "loss": {"loss_type": "stablemax_cross_entropy", "name": "losses@ACTLossHead"},
             "name": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1", "num_heads": 2, "pos_encodings": "rope",
             "puzzle_emb_ndim": 16},
    "beta1": 0.9, "beta2": 0.95, "checkpoint_every_eval": True,
    "checkpoint_path": "checkpoints/Sudoku-extreme-1k-aug-1000 ACT-torch/HierarchicalReasoningModel_ACTV1 tiny-run",
    "data_path": "data/sudoku-extreme-1k-aug-1000", "epochs": 20000, "eval_interval": 2000, "eval_save_outputs": [],
    "global_batch_size": 384, "lr": 7e-05, "lr_min_ratio": 1.0, "lr_warmup_steps": 2000,
    "project_name": "Sudoku-extreme-1k-aug-1000 ACT-torch", "puzzle_emb_lr": 7e-05, "puzzle_emb_weight_decay": 1.0,
    "run_name": "HierarchicalReasoningModel_ACTV1 tiny-run", "seed": 0, "weight_decay": 1.0,
    "future_upstream_field": 1,  # a field this trainer does not know, as a later upstream version may add
}
# pretrain.py with the published checkpoint's architecture, one epoch in batches of 2.
TINY_RUN = [f"arch.{k}={v}" for k, v in PUBLISHED_CONFIG["arch"].items() if k not in ("loss", "name")] + [
    "epochs=1", "eval_interval=1", "global_batch_size=2", "device=cpu", "logger=none"]


def sudoku_tokens(rows, column: int) -> np.ndarray:
    return np.array([[1 if ch == "." else int(ch) + 1 for ch in row[column]] for row in rows])


def maze_tokens(rows, column: int) -> np.ndarray:
    return np.array([[MAZE_CHARSET.index(ch) + 1 for ch in row[column]] for row in rows])


def files_of(folder: Path):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def snapshot(home: Path, repo: str, repo_type: str, hub: FakeHub) -> Path:
    kind = "datasets" if repo_type == "dataset" else "models"
    return home / "hub" / f"{kind}--{repo.replace('/', '--')}" / "snapshots" / hub.commit(repo, repo_type)


def outputs_in(folder: Path):
    """What a command left in `folder` besides the hub cache (a build writes its output folder, or a hidden
    temporary sibling of it, there)."""
    return sorted(p.name for p in folder.iterdir() if p.name != "home")


def one_line_error(result) -> str:
    """The single stderr line of a command that failed with exit status 2."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def local_sources(tmp_path_factory):
    """The hub's CSV files, also as local folders for --input-dir."""
    root = tmp_path_factory.mktemp("sources")
    for repo, files in SOURCES.items():
        for name, data in files.items():
            (root / repo).mkdir(parents=True, exist_ok=True)
            (root / repo / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def sudoku_data(local_sources, tmp_path_factory):
    """A Sudoku dataset built from the local CSV files (4 training puzzles with 3 augmentations each, 2 test)."""
    from tasks.sudoku.build import main
    from utils.cli import run_command

    out = tmp_path_factory.mktemp("data") / "sudoku"
    assert run_command(main, ["--input-dir", str(local_sources / SUDOKU_REPO), "--output-dir", str(out),
                          "--num-aug", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def published(sudoku_data, tmp_path_factory):
    """A checkpoint in the published format (model state dict with torch.compile's `_orig_mod.` keys, the
    original's all_config.yaml beside it) in a local folder; returns (folder, state dict without prefix)."""
    from training.build import create_model, training_metadata
    from training.config import validate_config
    from training.distributed import DistInfo

    raw = {k: v for k, v in PUBLISHED_CONFIG.items() if k != "future_upstream_field"}
    # Weights from another seed than the config's: a run that ignored load_checkpoint= would start elsewhere.
    config = validate_config({**raw, "data_path": str(sudoku_data), "device": "cpu", "seed": 7})
    model = create_model(config, training_metadata(config), DistInfo(0, 1, 0, torch.device("cpu")))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    folder = tmp_path_factory.mktemp("published")
    torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, folder / "checkpoint")
    (folder / "all_config.yaml").write_text(yaml.dump(PUBLISHED_CONFIG))
    return folder, state


@pytest.fixture(scope="module")
def hub(published):
    """The local hub, serving the dataset repositories, one that lacks its test.csv, and the checkpoint
    repository."""
    folder, _ = published
    with FakeHub() as server:
        for repo, files in SOURCES.items():
            for name, data in files.items():
                server.add(repo, name, data, repo_type="dataset")
        server.add("sapientinc/train-only", "train.csv", SOURCES[SUDOKU_REPO]["train.csv"], repo_type="dataset")
        for name in ("checkpoint", "all_config.yaml"):
            server.add(CHECKPOINT_REPO, name, (folder / name).read_bytes())
        yield server


def build(script: str, out: Path, env, *flags: str):
    return run_in_repo([sys.executable, f"dataset/{script}", "--output-dir", str(out), *flags], env=env, timeout=120)


# ------------------------------------------------------------------------------------------------ builders

@pytest.mark.parametrize("script, repo, flags, tokens", [
    ("build_sudoku_dataset.py", SUDOKU_REPO, ["--subsample-size", "3", "--num-aug", "2"], sudoku_tokens),
    ("build_maze_dataset.py", MAZE_REPO, ["--subsample-size", "2", "--aug"], maze_tokens),
])
def test_builder_default_source_downloads_the_published_files(hub, local_sources, tmp_path, script, repo, flags,
                                                              tokens):
    env = hub_env(hub.endpoint, tmp_path / "home")
    seen = len(hub.requests)
    result = build(script, tmp_path / "from-hub", env, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    local = build(script, tmp_path / "from-csv", env, "--input-dir", str(local_sources / repo), *flags)
    assert local.returncode == 0, local.stderr[-3000:]

    assert files_of(tmp_path / "from-hub") == files_of(tmp_path / "from-csv")
    cached = snapshot(tmp_path / "home", repo, "dataset", hub)
    for name in ("train.csv", "test.csv"):
        assert f"Reading {cached / name}\n" in result.stdout
        assert (cached / name).read_bytes() == SOURCES[repo][name]
        assert ("GET", f"/datasets/{repo}/resolve/main/{name}") in hub.requests[seen:]
    # The test split is neither subsampled nor augmented: its tokens follow from the CSV file directly.
    test_rows = [line.split(",") for line in SOURCES[repo]["test.csv"].decode().splitlines()[1:]]
    np.testing.assert_array_equal(np.load(tmp_path / "from-hub" / "test" / "all__inputs.npy"), tokens(test_rows, 1))
    np.testing.assert_array_equal(np.load(tmp_path / "from-hub" / "test" / "all__labels.npy"), tokens(test_rows, 2))


def test_offline_mode_builds_from_the_cache_without_a_request(hub, tmp_path):
    home = tmp_path / "home"
    assert build("build_sudoku_dataset.py", tmp_path / "online", hub_env(hub.endpoint, home)).returncode == 0
    seen = len(hub.requests)
    offline = build("build_sudoku_dataset.py", tmp_path / "offline", hub_env(hub.endpoint, home, HF_HUB_OFFLINE="1"))
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert len(hub.requests) == seen
    assert files_of(tmp_path / "offline") == files_of(tmp_path / "online")

    empty = build("build_sudoku_dataset.py", tmp_path / "none", hub_env(hub.endpoint, tmp_path / "empty",
                                                                        HF_HUB_OFFLINE="1"))
    assert one_line_error(empty) == (
        f"error: cannot get hf://datasets/{SUDOKU_REPO}/train.csv: HF_HUB_OFFLINE is set, and it is not in the hub "
        f"cache {tmp_path / 'empty' / 'hub'}; {ALTERNATIVES}")
    assert not (tmp_path / "none").exists() and len(hub.requests) == seen


def test_unreachable_hub_falls_back_to_the_cache(hub, tmp_path):
    home = tmp_path / "home"
    assert build("build_maze_dataset.py", tmp_path / "online", hub_env(hub.endpoint, home)).returncode == 0
    with silent_endpoint() as endpoint:
        cached = build("build_maze_dataset.py", tmp_path / "cached", hub_env(endpoint, home, HF_HUB_ETAG_TIMEOUT="1"))
    assert cached.returncode == 0, cached.stderr[-3000:]
    assert files_of(tmp_path / "cached") == files_of(tmp_path / "online")


def test_builder_missing_repository_or_file(hub, tmp_path):
    env = hub_env(hub.endpoint, tmp_path / "home")
    result = build("build_maze_dataset.py", tmp_path / "out", env, "--source-repo", "sapientinc/no-such-maze")
    assert one_line_error(result) == (
        f"error: cannot get hf://datasets/sapientinc/no-such-maze/train.csv: no dataset repository "
        f"sapientinc/no-such-maze at {hub.endpoint} (if it is private, log in with hf auth login or set HF_TOKEN), "
        f"and it is not in the hub cache {tmp_path / 'home' / 'hub'}; {ALTERNATIVES}")
    # A repository without test.csv: train.csv downloads, then the build stops before writing anything.
    result = build("build_sudoku_dataset.py", tmp_path / "out", env, "--source-repo", "sapientinc/train-only")
    assert one_line_error(result) == (
        f"error: cannot get hf://datasets/sapientinc/train-only/test.csv: no file test.csv in the dataset "
        f"repository sapientinc/train-only at {hub.endpoint}; {ALTERNATIVES}")
    assert outputs_in(tmp_path) == []


def test_builder_hub_that_does_not_answer(tmp_path):
    with silent_endpoint() as endpoint:
        started = time.perf_counter()
        result = build("build_sudoku_dataset.py", tmp_path / "out", hub_env(endpoint, tmp_path / "home"))
        elapsed = time.perf_counter() - started
    assert one_line_error(result) == (
        f"error: cannot get hf://datasets/{SUDOKU_REPO}/train.csv: {endpoint} did not answer in time "
        f"(HF_HUB_ETAG_TIMEOUT=2 s, HF_HUB_DOWNLOAD_TIMEOUT=2 s), and it is not in the hub cache "
        f"{tmp_path / 'home' / 'hub'}; {ALTERNATIVES}")
    # One 2 s time-out, not huggingface_hub's own retries (60 s time-outs, five times) before it gives up.
    assert elapsed < 15
    assert outputs_in(tmp_path) == []


# ------------------------------------------------------------------------------------------------ checkpoints

def metrics_of(stdout: str) -> dict:
    """evaluate.py's metrics, less the wall time (which no two runs share)."""
    metrics = json.loads(stdout[stdout.index("{"):stdout.rindex("}") + 1])
    return {k: v for k, v in metrics.items() if not k.endswith("wall_time_s")}


@pytest.mark.slow
def test_evaluate_hub_checkpoint_as_with_a_local_path(hub, published, sudoku_data, tmp_path):
    folder, _ = published
    env = hub_env(hub.endpoint, tmp_path / "home")
    common = [f"data_path={sudoku_data}", "device=cpu", "save_outputs=[preds]"]
    work = tmp_path / "work"  # the current folder: hub checkpoints' outputs go under its checkpoints/hub/
    work.mkdir()
    from_hub = subprocess.run([sys.executable, f"{REPO}/evaluate.py", f"checkpoint={CHECKPOINT_REF}", *common],
                              env=env, cwd=work, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=300)
    assert from_hub.returncode == 0, from_hub.stderr[-3000:]
    from_file = run_in_repo([sys.executable, "evaluate.py", f"checkpoint={folder / 'checkpoint'}", *common],
                            env=env, timeout=300)
    assert from_file.returncode == 0, from_file.stderr[-3000:]

    assert metrics_of(from_hub.stdout) == metrics_of(from_file.stdout)
    cached = snapshot(tmp_path / "home", CHECKPOINT_REPO, "model", hub)
    assert (f"note: ignoring fields of {cached / 'all_config.yaml'} unknown to this trainer: future_upstream_field"
            in from_hub.stdout)
    for name in ("checkpoint", "all_config.yaml"):
        assert (cached / name).read_bytes() == (folder / name).read_bytes()
    outputs = work / "checkpoints" / "hub" / CHECKPOINT_REPO / "checkpoint_all_preds.0"
    assert f"outputs saved to {outputs}\n" in from_hub.stdout
    hub_preds = torch.load(outputs, weights_only=True)["preds"]
    assert torch.equal(hub_preds, torch.load(folder / "checkpoint_all_preds.0", weights_only=True)["preds"])
    assert hub_preds.shape == (2, 81)  # the two test puzzles


@pytest.mark.slow
def test_solve_cli_with_a_hub_checkpoint(hub, published, sudoku_data, tmp_path):
    folder, _ = published
    env = hub_env(hub.endpoint, tmp_path / "home")
    puzzle = sudoku_rows(1, 4)[0][1]
    runs = [run_in_repo([sys.executable, "-m", "tools.solve", f"checkpoint={checkpoint}", f"puzzle={puzzle}",
                         f"data_path={sudoku_data}", "device=cpu"], env=env, timeout=300)
            for checkpoint in (CHECKPOINT_REF, folder / "checkpoint")]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    # The same answer from the same weights; only the lines naming the checkpoint or its config differ.
    hub_lines, file_lines = ([line for line in run.stdout.splitlines()
                              if "checkpoint:" not in line and not line.startswith("note: ignoring fields of")]
                             for run in runs)
    assert hub_lines == file_lines and any(line.startswith("answer string: ") for line in hub_lines)


@pytest.mark.slow
def test_load_checkpoint_from_the_hub_starts_from_the_published_weights(hub, published, sudoku_data, tmp_path):
    """With learning rates 0 the weights never move, so the run's final model equals the published one."""
    _, state = published
    run_dir = tmp_path / "run"
    result = run_in_repo([sys.executable, "pretrain.py", f"data_path={sudoku_data}",
                          f"load_checkpoint={CHECKPOINT_REF}", f"checkpoint_path={run_dir}", *TINY_RUN, "lr=0",
                          "puzzle_emb_lr=0", "lr_warmup_steps=0"],
                         env=hub_env(hub.endpoint, tmp_path / "home"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # An epoch takes one puzzle of each of the 4 groups: in batches of 2, 2 steps.
    final = torch.load(run_dir / "step_2", weights_only=True)
    assert final.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(final[key], value), key


@pytest.mark.parametrize("reference, reason", [
    ("hf://sapientinc/HRM-checkpoint-nowhere/checkpoint",
     "no model repository sapientinc/HRM-checkpoint-nowhere at {endpoint} (if it is private, log in with hf auth "
     "login or set HF_TOKEN), and it is not in the hub cache {cache}"),
    (f"hf://{CHECKPOINT_REPO}/step_999",
     f"no file step_999 in the model repository {CHECKPOINT_REPO} at {{endpoint}}"),
])
def test_evaluate_missing_hub_repository_or_file(hub, tmp_path, reference, reason):
    result = run_in_repo([sys.executable, "evaluate.py", f"checkpoint={reference}", "device=cpu"],
                         env=hub_env(hub.endpoint, tmp_path / "home"), timeout=300)
    assert one_line_error(result) == f"error: cannot get {reference}: " + reason.format(
        endpoint=hub.endpoint, cache=tmp_path / "home" / "hub")


def test_evaluate_reference_without_a_file_name(hub, tmp_path):
    seen = len(hub.requests)
    result = run_in_repo([sys.executable, "evaluate.py", f"checkpoint=hf://{CHECKPOINT_REPO}", "device=cpu"],
                         env=hub_env(hub.endpoint, tmp_path / "home"), timeout=300)
    assert one_line_error(result) == (
        f"error: hf://{CHECKPOINT_REPO} is not a hub file reference: expected hf://OWNER/REPO/FILE (the repository "
        f"and the file in it), e.g. hf://sapientinc/HRM-checkpoint-sudoku-extreme/checkpoint")
    assert len(hub.requests) == seen  # nothing was asked of the hub


def test_evaluate_hub_that_does_not_answer(tmp_path):
    with silent_endpoint() as endpoint:
        result = run_in_repo([sys.executable, "evaluate.py", f"checkpoint={CHECKPOINT_REF}", "device=cpu"],
                             env=hub_env(endpoint, tmp_path / "home"), timeout=300)
    assert one_line_error(result) == (
        f"error: cannot get {CHECKPOINT_REF}: {endpoint} did not answer in time (HF_HUB_ETAG_TIMEOUT=2 s, "
        f"HF_HUB_DOWNLOAD_TIMEOUT=2 s), and it is not in the hub cache {tmp_path / 'home' / 'hub'}")


def test_pretrain_missing_hub_checkpoint_writes_no_run_folder(hub, sudoku_data, tmp_path):
    run_dir = tmp_path / "run"
    result = run_in_repo([sys.executable, "pretrain.py", f"data_path={sudoku_data}",
                          "load_checkpoint=hf://sapientinc/HRM-checkpoint-nowhere/checkpoint",
                          f"checkpoint_path={run_dir}", *TINY_RUN],
                         env=hub_env(hub.endpoint, tmp_path / "home"), timeout=300)
    assert one_line_error(result) == (
        f"error: cannot get hf://sapientinc/HRM-checkpoint-nowhere/checkpoint: no model repository "
        f"sapientinc/HRM-checkpoint-nowhere at {hub.endpoint} (if it is private, log in with hf auth login or set "
        f"HF_TOKEN), and it is not in the hub cache {tmp_path / 'home' / 'hub'}")
    assert not run_dir.exists()


# ------------------------------------------------------------------------------------------------ references

def test_parse_reference():
    assert parse_reference("hf://sapientinc/HRM-checkpoint-ARC-2/checkpoint") == HubFile(
        "sapientinc/HRM-checkpoint-ARC-2", "checkpoint", "model")
    nested = parse_reference("hf://owner/repo/runs/a/step_100")
    assert nested == HubFile("owner/repo", "runs/a/step_100", "model")
    assert nested.beside("all_config.yaml") == HubFile("owner/repo", "runs/a/all_config.yaml", "model")
    assert parse_reference("hf://datasets/sapientinc/sudoku-extreme/train.csv") == HubFile(
        "sapientinc/sudoku-extreme", "train.csv", "dataset")
    assert str(HubFile("sapientinc/sudoku-extreme", "train.csv", "dataset")) == (
        "hf://datasets/sapientinc/sudoku-extreme/train.csv")
    for bad in ("hf://sapientinc/HRM-checkpoint-ARC-2", "hf://sapientinc/HRM-checkpoint-ARC-2/", "hf://sapientinc",
                "hf://owner//checkpoint", "hf://owner/repo/../checkpoint"):
        with pytest.raises(HubError, match=r"is not a hub file reference: expected hf://OWNER/REPO/FILE"):
            parse_reference(bad)


def test_local_paths_stay_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("runs/a/step_5", beside=("all_config.yaml",)) == "runs/a/step_5"
    assert output_prefix("runs/a/step_5") == str(tmp_path / "runs" / "a" / "step_5")
    assert output_prefix("hf://owner/repo/runs/a/step_5") == str(
        tmp_path / "checkpoints" / "hub" / "owner" / "repo" / "runs" / "a" / "step_5")
