"""utils/checkpoint.py: which checkpoints count as intact, pruning of training states, the background writer."""
import os
import threading

import pytest
import torch

from training import checkpoint_files as ck
from training.checkpoint_files import CheckpointError, CheckpointWriter


def write_checkpoint(folder, step, world_size=2, **shared):
    path = ck.checkpoint_path(str(folder), step)
    for rank in range(world_size):
        ck.atomic_torch_save({"rank": rank, "carry": torch.full((2,), float(step))}, ck.rank_shard_path(path, rank))
    ck.atomic_torch_save({"step": step, "world_size": world_size, **shared}, path + ck.TRAIN_STATE_SUFFIX)
    ck.atomic_torch_save({"w": torch.tensor([float(step)])}, path)
    return path


def test_latest_intact_needs_every_rank_shard(tmp_path):
    write_checkpoint(tmp_path, 10)
    newest = write_checkpoint(tmp_path, 20)
    path, model, saved, ranks = ck.find_latest_intact(str(tmp_path))
    assert path == newest and saved["step"] == 20 and [r["rank"] for r in ranks] == [0, 1]
    assert model["w"].item() == 20.0
    # Rank 1 was killed while writing its part of step 20 (its tmp file never renamed): step 10 is the newest
    # checkpoint all of whose files are there.
    os.remove(ck.rank_shard_path(newest, 1))
    with pytest.warns(UserWarning, match=r"step_20.rank1 does not exist"):
        path, *_ = ck.find_latest_intact(str(tmp_path))
    assert path.endswith("step_10")
    with open(ck.rank_shard_path(path, 0), "r+b") as f:  # a damaged shard is not intact either
        f.truncate(10)
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="no intact checkpoint"):
        ck.find_latest_intact(str(tmp_path))


def test_pruning_keeps_newest_training_states_and_every_model_file(tmp_path):
    for step in (10, 20, 30, 40):
        write_checkpoint(tmp_path, step)
    (tmp_path / "step_20_all_preds.0").write_text("outputs")
    ck.prune_checkpoints(str(tmp_path), keep_last=None, keep_states=2)
    names = set(os.listdir(tmp_path))
    assert {"step_10", "step_20", "step_30", "step_40", "step_20_all_preds.0"} <= names
    for step, kept in ((10, False), (20, False), (30, True), (40, True)):
        for suffix in (".state", ".rank0", ".rank1"):
            assert (f"step_{step}{suffix}" in names) == kept, (step, suffix)
    # A model file without its state (pruned, or published) is passed over silently by resume=latest.
    assert ck.find_latest_intact(str(tmp_path))[0].endswith("step_40")
    ck.prune_checkpoints(str(tmp_path), keep_last=1, keep_states=2)
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("step_")) == [
        "step_20_all_preds.0", "step_40", "step_40.rank0", "step_40.rank1", "step_40.state"]


def test_background_writer_writes_in_order_and_reports_failures(tmp_path, monkeypatch):
    writer = CheckpointWriter(background=True)
    gate = threading.Event()
    order = []
    real_save = ck.atomic_torch_save

    def slow_save(obj, path):
        gate.wait(timeout=10)
        order.append(os.path.basename(path))
        real_save(obj, path)

    monkeypatch.setattr(ck, "atomic_torch_save", slow_save)
    writer.submit([({"a": 1}, str(tmp_path / "first")), ({"b": 2}, str(tmp_path / "second"))],
                  then=lambda: order.append("then"))
    assert not (tmp_path / "first").exists()  # submit returned before anything was written
    gate.set()
    writer.wait()
    assert order == ["first", "second", "then"]

    def failing_save(obj, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "atomic_torch_save", failing_save)
    writer.submit([({"c": 3}, str(tmp_path / "third"))])
    # No step_<N> checkpoint in the folder: the message says so (it once claimed "the previous one is intact").
    with pytest.raises(CheckpointError, match="writing a checkpoint failed .*[Nn]o space left on device.*no earlier "
                                              "checkpoint of this run exists"):
        writer.wait()
    writer.wait()  # reported once


def test_cpu_copy_is_a_snapshot():
    live = {"w": torch.ones(3), "nested": [torch.zeros(2), 5]}
    snapshot = ck.cpu_copy(live)
    live["w"].add_(1.0)
    live["nested"][0].fill_(7.0)
    assert torch.equal(snapshot["w"], torch.ones(3)) and torch.equal(snapshot["nested"][0], torch.zeros(2))
    assert snapshot["nested"][1] == 5


def test_rewind_metrics_drops_what_was_logged_after_the_checkpoint(tmp_path):
    from types import SimpleNamespace

    from training.checkpointing import rewind_metrics

    config = SimpleNamespace(checkpoint_path=str(tmp_path))
    assert rewind_metrics(config, 10) is False  # no metrics yet
    (tmp_path / "metrics.jsonl").write_text("".join(f'{{"step": {s}, "train/lm_loss": 1.0}}\n' for s in (5, 10)))
    assert rewind_metrics(config, 10) is False
    (tmp_path / "metrics.jsonl").write_text("".join(f'{{"step": {s}, "train/lm_loss": 1.0}}\n' for s in (5, 10, 15)))
    assert rewind_metrics(config, 10) is True
    assert (tmp_path / "metrics.jsonl").read_text().count("step") == 2
