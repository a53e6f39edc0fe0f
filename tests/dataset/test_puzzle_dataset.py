"""Tests of dataset/puzzle_dataset.py (the batch loader, docs/DESIGN.md §6)."""
import json
import os

import numpy as np
import pytest
import torch

from dataset.common import IGNORE_LABEL_ID
from dataset.puzzle_dataset import (
    DatasetNotFoundError,
    PuzzleDataset,
    PuzzleDatasetConfig,
    _train_batch_indices,
    load_metadata,
)
from tests.helpers import write_tiny_dataset


def make(path, split="train", **overrides):
    cfg = dict(seed=0, dataset_path=str(path), global_batch_size=4, test_set_mode=split != "train",
               epochs_per_iter=1, rank=0, num_replicas=1)
    cfg.update(overrides)
    return PuzzleDataset(PuzzleDatasetConfig(**cfg), split=split)


def row_index(arrays, inputs):
    """Example index of every row of `inputs` in `arrays["inputs"]` (-1 for rows not in it, e.g. padding)."""
    table = {r.astype(np.int32).tobytes(): i for i, r in enumerate(arrays["inputs"])}
    return np.array([table.get(r.astype(np.int32).tobytes(), -1) for r in inputs.numpy()])


def collect(ds):
    return [(s, {k: v.clone() for k, v in b.items()}, n) for s, b, n in ds]


def assert_same(a, b):
    assert len(a) == len(b)
    for (s1, b1, n1), (s2, b2, n2) in zip(a, b):
        assert s1 == s2 and n1 == n2
        for k in b1:
            assert torch.equal(b1[k], b2[k]), k


# --------------------------------------------------------------------------------------------- training


def test_train_batches_shape_and_dtype(tmp_path):
    write_tiny_dataset(tmp_path, groups=7, puzzles_per_group=2, examples_per_puzzle=3)
    ds = make(tmp_path, global_batch_size=6, epochs_per_iter=3)
    batches = collect(ds)
    assert batches
    for set_name, batch, gbs in batches:
        assert set_name == "all" and gbs == 6
        assert set(batch) == {"inputs", "labels", "puzzle_identifiers"}
        assert batch["inputs"].shape == (6, 6) and batch["inputs"].dtype == torch.int32
        assert batch["labels"].shape == (6, 6) and batch["labels"].dtype == torch.int32
        assert batch["puzzle_identifiers"].shape == (6,) and batch["puzzle_identifiers"].dtype == torch.int32


def test_train_one_epoch_visits_each_group_once(tmp_path):
    data = write_tiny_dataset(tmp_path, groups=10, puzzles_per_group=1, examples_per_puzzle=1)
    arrays = data["train"]["all"]
    batches = collect(make(tmp_path, global_batch_size=4))
    assert len(batches) == 2  # 10 groups -> 2 full batches, tail of 2 dropped
    seen = np.concatenate([row_index(arrays, b["inputs"]) for _, b, _ in batches])
    groups = arrays["example_group"][seen]
    assert len(set(groups.tolist())) == 8


def test_train_several_epochs_per_iter_visit_each_group_once_per_epoch(tmp_path):
    data = write_tiny_dataset(tmp_path, groups=8, puzzles_per_group=1, examples_per_puzzle=1)
    arrays = data["train"]["all"]
    batches = collect(make(tmp_path, global_batch_size=4, epochs_per_iter=3))
    assert len(batches) == 6
    seen = np.concatenate([row_index(arrays, b["inputs"]) for _, b, _ in batches])
    assert np.bincount(arrays["example_group"][seen], minlength=8).tolist() == [3] * 8
    # each epoch is its own permutation: the first 8 visits are 8 distinct groups
    assert sorted(arrays["example_group"][seen[:8]].tolist()) == list(range(8))


def test_train_examples_come_from_one_puzzle_per_group(tmp_path):
    data = write_tiny_dataset(tmp_path, groups=6, puzzles_per_group=3, examples_per_puzzle=2)
    arrays = data["train"]["all"]
    ds = make(tmp_path, global_batch_size=4, epochs_per_iter=5)
    for _ in range(3):
        for _, batch, _ in ds:
            idx = row_index(arrays, batch["inputs"])
            assert (idx >= 0).all()
            puzzles = arrays["example_puzzle"][idx]
            # puzzle identifiers are those of each example's puzzle
            assert batch["puzzle_identifiers"].numpy().tolist() == arrays["puzzle_identifiers"][puzzles].tolist()
            # batch of 4 = two puzzles of 2 examples, both examples of each puzzle, from different groups
            assert puzzles[0] == puzzles[1] and puzzles[2] == puzzles[3]
            assert sorted(idx.tolist()) == sorted(set(idx.tolist()))
            assert arrays["example_group"][idx[0]] != arrays["example_group"][idx[2]]


def test_train_reproducible_per_seed_and_counter(tmp_path):
    write_tiny_dataset(tmp_path, groups=12, puzzles_per_group=3, examples_per_puzzle=[1, 2, 3] * 4)
    a, b, c = make(tmp_path, seed=5), make(tmp_path, seed=5), make(tmp_path, seed=6)
    a1, b1, c1 = collect(a), collect(b), collect(c)
    assert_same(a1, b1)
    flat = lambda bs: torch.cat([x["inputs"] for _, x, _ in bs])
    assert not torch.equal(flat(a1), flat(c1))
    a2 = collect(a)
    assert_same(a2, collect(b))
    assert not torch.equal(flat(collect(make(tmp_path, seed=-5))), flat(a1))  # negative seeds work too
    assert not torch.equal(flat(a1)[: len(flat(a2))], flat(a2)[: len(flat(a1))])


@pytest.mark.parametrize("examples, expected", [
    (1, 2 * (3 * 7 // 4)),  # one example per puzzle: 21 examples an iteration fill 5 batches of 4, twice
    ([1, 2, 3, 0, 2, 5, 1], None),  # puzzles cut short at a batch's end: only a replay can tell
])
def test_count_train_batches_is_what_training_yields(tmp_path, examples, expected):
    write_tiny_dataset(tmp_path, sets=("a", "b"), groups=7, puzzles_per_group=1, examples_per_puzzle=examples)
    ds = make(tmp_path, global_batch_size=4, epochs_per_iter=3)
    yielded = len(collect(ds)) + len(collect(ds))  # two iterations
    assert ds.count_train_batches(2) == yielded
    if expected is not None:
        assert yielded == 2 * expected  # both sets


def test_train_puzzle_larger_than_space_gives_subset_without_duplicates(tmp_path):
    # group 0: one puzzle of 10 examples; other groups: one puzzle of one example
    data = write_tiny_dataset(tmp_path, groups=5, puzzles_per_group=1, examples_per_puzzle=[10, 1, 1, 1, 1])
    arrays = data["train"]["all"]
    ds = make(tmp_path, global_batch_size=3, epochs_per_iter=20)
    big_seen = 0
    for _ in range(2):
        for _, batch, gbs in ds:
            idx = row_index(arrays, batch["inputs"])
            assert gbs == 3 and (idx >= 0).all()
            is_big = arrays["example_puzzle"][idx] == 0
            if is_big.any():
                big_seen += 1
                first = int(np.argmax(is_big))
                # the big puzzle never fits whole: a duplicate-free subset filling the rest of the batch
                assert is_big[first:].all()
                assert len(set(idx[first:].tolist())) == 3 - first
    assert big_seen > 0


def test_train_labels_ignore_id_mapped(tmp_path):
    data = write_tiny_dataset(tmp_path, ignore_label_id=3, vocab_size=6)
    arrays = data["train"]["all"]
    for _, batch, _ in make(tmp_path, global_batch_size=2, epochs_per_iter=4):
        idx = row_index(arrays, batch["inputs"])
        expected = arrays["labels"][idx].copy()
        expected[expected == 3] = IGNORE_LABEL_ID
        assert np.array_equal(batch["labels"].numpy(), expected)
        assert not (batch["labels"] == 3).any()


def test_labels_untouched_without_ignore_id(tmp_path):
    data = write_tiny_dataset(tmp_path, ignore_label_id=None)
    arrays = data["test"]["all"]
    (_, batch, _), *_ = collect(make(tmp_path, "test", global_batch_size=12))
    assert np.array_equal(batch["labels"].numpy(), arrays["labels"])


def test_on_disk_dtype_converted_to_int32(tmp_path):
    write_tiny_dataset(tmp_path, dtype=np.uint8)
    for split in ("train", "test"):
        _, batch, _ = next(iter(make(tmp_path, split)))
        assert all(v.dtype == torch.int32 for v in batch.values())


def test_several_sets_counter_per_set(tmp_path):
    write_tiny_dataset(tmp_path, sets=("a", "b"), groups=4, puzzles_per_group=1, examples_per_puzzle=1)
    ds = make(tmp_path, global_batch_size=2)
    names = [s for s, _, _ in ds]
    assert names == ["a", "a", "b", "b"]
    assert ds.state_dict()["iters"] == 2


def test_too_small_for_one_batch_warns(tmp_path):
    write_tiny_dataset(tmp_path, groups=3, puzzles_per_group=1, examples_per_puzzle=1)
    with pytest.warns(UserWarning, match="global batch"):
        assert collect(make(tmp_path, global_batch_size=8)) == []


class _RecordingRng:
    """Real generator that records its draws, so a reference walk can replay them."""

    def __init__(self, seed):
        self.g, self.ints, self.choices = np.random.default_rng(seed), [], []

    def permutation(self, n):
        return self.g.permutation(n)

    def integers(self, lo, hi):
        self.ints.append(self.g.integers(lo, hi))
        return self.ints[-1]

    def choice(self, n, k, replace):
        self.choices.append(self.g.choice(n, k, replace=replace))
        return self.choices[-1]


def test_train_fill_equals_plain_greedy_walk():
    """The vectorised fill gives the batches of the original one-group-at-a-time loop (empty puzzles included)."""
    rs = np.random.default_rng(0)
    for trial in range(60):
        groups = int(rs.integers(1, 10))
        group_indices = np.concatenate([[0], np.cumsum(rs.integers(1, 4, groups))])
        puzzle_indices = np.concatenate([[0], np.cumsum(rs.integers(0, 6, group_indices[-1]))])
        epochs, B = int(rs.integers(1, 5)), int(rs.integers(1, 10))
        rng = _RecordingRng(trial)
        got = list(_train_batch_indices(rng, group_indices, puzzle_indices, epochs, B))

        for epoch_puzzles in rng.ints:  # each epoch visits every group once, one of its own puzzles each
            epoch_groups = np.searchsorted(group_indices, epoch_puzzles, side="right") - 1
            assert sorted(epoch_groups.tolist()) == list(range(groups))
        walk, choices, expected, i = np.concatenate(rng.ints), iter(rng.choices), [], 0
        while True:
            examples, puzzles = [], []
            while i < walk.size and len(examples) < B:
                p = walk[i]
                i += 1
                start, size = puzzle_indices[p], puzzle_indices[p + 1] - puzzle_indices[p]
                take = min(size, B - len(examples))
                picked = np.sort(next(choices)) if take < size else np.arange(size)
                examples += (start + picked).tolist()
                puzzles += [p] * take
            if len(examples) < B:
                break
            expected.append((examples, puzzles))
        assert next(choices, None) is None
        assert [(e.tolist(), p.tolist()) for e, p in got] == expected, trial


# ----------------------------------------------------------------------------------------------- ranks


@pytest.mark.parametrize("split", ["train", "test"])
def test_rank_slices_concatenate_to_global_batch(tmp_path, split):
    write_tiny_dataset(tmp_path, groups=9, puzzles_per_group=2, examples_per_puzzle=[[1, 3]] * 9)
    whole = collect(make(tmp_path, split, global_batch_size=8, epochs_per_iter=2))
    parts = [collect(make(tmp_path, split, global_batch_size=8, epochs_per_iter=2, rank=r, num_replicas=2))
             for r in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) > 0
    for (s, b, n), (s0, b0, n0), (s1, b1, n1) in zip(whole, *parts):
        assert s == s0 == s1 and n == n0 == n1
        assert b0["inputs"].shape[0] == b1["inputs"].shape[0] == 4
        for k in b:
            assert torch.equal(torch.cat([b0[k], b1[k]]), b[k])


# -------------------------------------------------------------------------------------------- evaluation


def test_eval_walks_all_examples_in_order_with_padding(tmp_path):
    data = write_tiny_dataset(tmp_path, groups=3, puzzles_per_group=2, examples_per_puzzle=[[2, 1], [0, 3], 2],
                              pad_id=0, blank_identifier_id=0, ignore_label_id=0)
    arrays = data["test"]["all"]
    n = arrays["inputs"].shape[0]  # 10 examples
    ds = make(tmp_path, "test", global_batch_size=4)
    batches = collect(ds)
    assert [gbs for _, _, gbs in batches] == [4, 4, 2]
    inputs = torch.cat([b["inputs"] for _, b, _ in batches])
    labels = torch.cat([b["labels"] for _, b, _ in batches])
    ids = torch.cat([b["puzzle_identifiers"] for _, b, _ in batches])
    assert np.array_equal(inputs[:n].numpy(), arrays["inputs"])
    expected_labels = arrays["labels"].copy()
    expected_labels[expected_labels == 0] = IGNORE_LABEL_ID
    assert np.array_equal(labels[:n].numpy(), expected_labels)
    assert ids[:n].numpy().tolist() == arrays["puzzle_identifiers"][arrays["example_puzzle"]].tolist()
    # padding of the last batch
    assert (inputs[n:] == 0).all() and (labels[n:] == IGNORE_LABEL_ID).all() and (ids[n:] == 0).all()
    # no randomness, no counter
    assert_same(batches, collect(ds))


def test_eval_padding_uses_metadata_ids_and_empty_rank_slice(tmp_path):
    data = write_tiny_dataset(tmp_path, groups=5, puzzles_per_group=1, examples_per_puzzle=1, pad_id=7,
                              vocab_size=9, blank_identifier_id=0, ignore_label_id=None)
    arrays = data["test"]["all"]
    # metadata ids other than 0: rewrite dataset.json with a different blank id
    meta_path = os.path.join(tmp_path, "test", "dataset.json")
    meta = json.load(open(meta_path))
    meta["blank_identifier_id"] = 42
    json.dump(meta, open(meta_path, "w"))
    ranks = [collect(make(tmp_path, "test", global_batch_size=8, rank=r, num_replicas=2)) for r in range(2)]
    (_, b0, n0), = ranks[0]
    (_, b1, n1), = ranks[1]
    assert n0 == n1 == 5
    assert np.array_equal(b0["inputs"].numpy(), arrays["inputs"][:4])
    assert np.array_equal(b1["inputs"][:1].numpy(), arrays["inputs"][4:])
    assert (b1["inputs"][1:] == 7).all() and (b1["labels"][1:] == IGNORE_LABEL_ID).all()
    assert (b1["puzzle_identifiers"][1:] == 42).all()
    # rank slice entirely past the end: fully padded
    ranks4 = [collect(make(tmp_path, "test", global_batch_size=8, rank=r, num_replicas=4)) for r in range(4)]
    (_, b3, n3), = ranks4[3]
    assert n3 == 5 and (b3["inputs"] == 7).all() and (b3["puzzle_identifiers"] == 42).all()


def test_dataloader_num_workers_0_matches_direct_iteration(tmp_path):
    write_tiny_dataset(tmp_path, groups=6)
    direct = collect(make(tmp_path, global_batch_size=4, epochs_per_iter=2, seed=3))
    loader = torch.utils.data.DataLoader(make(tmp_path, global_batch_size=4, epochs_per_iter=2, seed=3),
                                         batch_size=None, num_workers=0)
    assert_same(direct, collect(loader))


# ------------------------------------------------------------------------------------------------ resume


@pytest.mark.parametrize("k", [0, 1, 3, 7])
def test_resume_mid_iteration(tmp_path, k):
    write_tiny_dataset(tmp_path, sets=("a", "b"), groups=7, puzzles_per_group=2, examples_per_puzzle=[[1, 4]] * 7)
    cfg = dict(global_batch_size=4, epochs_per_iter=2, seed=11)
    reference = make(tmp_path, **cfg)
    ref_first, ref_second = collect(reference), collect(reference)
    assert len(ref_first) > 7

    ds = make(tmp_path, **cfg)
    it = iter(ds)
    consumed = [next(it) for _ in range(k)]
    assert_same(consumed, ref_first[:k])
    state = ds.state_dict()
    assert state["batches_yielded"] == k and state["iters"] == 0

    resumed = make(tmp_path, **cfg)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    assert_same(collect(resumed), ref_first[k:])
    assert_same(collect(resumed), ref_second)  # and later iterations continue as uninterrupted


def test_resume_across_iteration_boundary(tmp_path):
    write_tiny_dataset(tmp_path, groups=9)
    reference = make(tmp_path, epochs_per_iter=2)
    runs = [collect(reference) for _ in range(3)]

    ds = make(tmp_path, epochs_per_iter=2)
    collect(ds)
    state = ds.state_dict()
    assert state["iters"] == 1 and state["batches_yielded"] == 0
    resumed = make(tmp_path, epochs_per_iter=2)
    resumed.load_state_dict(state)
    assert_same(collect(resumed), runs[1])
    # resume taken right after the last batch of an iteration, before the generator noticed its end
    ds = make(tmp_path, epochs_per_iter=2)
    collect(ds)
    it = iter(ds)
    for _ in range(len(runs[1])):
        next(it)
    resumed = make(tmp_path, epochs_per_iter=2)
    resumed.load_state_dict(ds.state_dict())
    assert collect(resumed) == []
    assert_same(collect(resumed), runs[2])


def test_resume_eval_and_state_is_rank_independent(tmp_path):
    write_tiny_dataset(tmp_path, groups=5, examples_per_puzzle=2)
    full = collect(make(tmp_path, "test", global_batch_size=4, rank=1, num_replicas=2))
    ds = make(tmp_path, "test", global_batch_size=4)
    it = iter(ds)
    next(it), next(it)
    resumed = make(tmp_path, "test", global_batch_size=4, rank=1, num_replicas=2)
    resumed.load_state_dict(ds.state_dict())
    assert_same(collect(resumed), full[2:])


def test_load_state_dict_validates_and_warns(tmp_path):
    write_tiny_dataset(tmp_path)
    ds = make(tmp_path)
    with pytest.raises(ValueError, match="iters"):
        ds.load_state_dict({})
    with pytest.raises(ValueError, match="batches_yielded"):
        ds.load_state_dict({"iters": 0, "batches_yielded": -1})
    ds.load_state_dict({"iters": 4})  # minimal state
    assert ds.state_dict()["iters"] == 4
    with pytest.warns(UserWarning, match="seed"):
        ds.load_state_dict(dict(make(tmp_path, seed=1).state_dict()))


# ------------------------------------------------------------------------------------------------ errors


def test_missing_dataset_folder(tmp_path):
    missing = tmp_path / "sudoku-nowhere"
    with pytest.raises(DatasetNotFoundError) as e:
        make(missing)
    msg = str(e.value)
    assert str(missing) in msg and "build" in msg and "\n" not in msg
    assert "build_sudoku_dataset.py" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_missing_split_and_metadata(tmp_path):
    write_tiny_dataset(tmp_path, splits=("train",))
    with pytest.raises(DatasetNotFoundError, match="build") as e:
        make(tmp_path, "test")
    assert str(tmp_path / "test") in str(e.value)
    os.remove(tmp_path / "train" / "dataset.json")
    with pytest.raises(DatasetNotFoundError, match="dataset.json"):
        load_metadata(str(tmp_path), "train")


def test_metadata_read_eagerly_arrays_lazily(tmp_path):
    write_tiny_dataset(tmp_path, vocab_size=5, seq_len=7)
    os.remove(tmp_path / "train" / "all__labels.npy")
    ds = make(tmp_path)  # no array touched yet
    assert ds.metadata.seq_len == 7 and ds.metadata.vocab_size == 5
    assert load_metadata(str(tmp_path), "train") == ds.metadata
    with pytest.raises(DatasetNotFoundError, match="all__labels.npy"):
        next(iter(ds))


def test_invalid_metadata_is_one_line_value_error(tmp_path):
    write_tiny_dataset(tmp_path)
    meta_path = tmp_path / "train" / "dataset.json"
    meta = json.load(open(meta_path))
    meta["surprise"] = 1
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(ValueError, match="surprise") as e:
        load_metadata(str(tmp_path), "train")
    assert "\n" not in str(e.value)


def test_batch_size_must_divide_by_replicas(tmp_path):
    write_tiny_dataset(tmp_path)
    with pytest.raises(ValueError, match="divisible") as e:
        make(tmp_path, global_batch_size=6, num_replicas=4)
    assert "6" in str(e.value) and "4" in str(e.value)
    with pytest.raises(ValueError, match="rank"):
        make(tmp_path, rank=2, num_replicas=2)


def test_config_forbids_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match="typo"):
        PuzzleDatasetConfig(seed=0, dataset_path=str(tmp_path), global_batch_size=4, test_set_mode=False,
                            epochs_per_iter=1, rank=0, num_replicas=1, typo=1)


def test_metadata_with_total_puzzles_from_later_upstream_builders_loads(tmp_path):
    write_tiny_dataset(tmp_path)
    meta_path = tmp_path / "train" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta["total_puzzles"] = 6
    meta_path.write_text(json.dumps(meta))
    assert load_metadata(str(tmp_path), "train").total_puzzles == 6


# --------------------------------------------------------------------------------------------- several datasets


def test_several_datasets_train_as_one(tmp_path):
    a = write_tiny_dataset(tmp_path / "a", groups=3, puzzles_per_group=2, examples_per_puzzle=2, seed=1)
    b = write_tiny_dataset(tmp_path / "b", groups=5, puzzles_per_group=1, examples_per_puzzle=3, seed=2,
                           num_puzzle_identifiers=4)
    ds = PuzzleDataset(PuzzleDatasetConfig(seed=0, dataset_paths=[str(tmp_path / "a"), str(tmp_path / "b")],
                                           global_batch_size=3, test_set_mode=False, epochs_per_iter=1, rank=0,
                                           num_replicas=1), split="train")
    meta = ds.metadata
    # a: 7 identifiers (6 puzzles + blank), b: 4; b's sets are renamed as TRM does, its ids shifted past a's.
    assert meta.sets == ["all", "all1"] and meta.num_puzzle_identifiers == 7 + 4
    assert meta.total_groups == 3 + 5
    # Examples of one epoch add up: 3 groups x 2 + 5 groups x 3 = 21 = total_groups x mean_puzzle_examples.
    assert meta.total_groups * meta.mean_puzzle_examples == pytest.approx(21)
    assert [(s.path, s.sets, s.identifier_offset) for s in ds.sources] == [
        (str(tmp_path / "a"), {"all": "all"}, 0), (str(tmp_path / "b"), {"all": "all1"}, 7)]
    batches = {"all": 0, "all1": 0}
    for set_name, batch, _ in ds:
        arrays = (a if set_name == "all" else b)["train"]["all"]
        rows = row_index(arrays, batch["inputs"])
        assert (rows >= 0).all()  # each set's batches come from its own folder
        expected = arrays["puzzle_identifiers"][arrays["example_puzzle"][rows]] + (0 if set_name == "all" else 7)
        assert np.array_equal(batch["puzzle_identifiers"].numpy(), expected)
        batches[set_name] += 1
    # One epoch of each, one puzzle per group: a gives 2 + 1 examples (the puzzle that overflows contributes
    # what fits) then 2 (an incomplete batch, dropped); b's puzzles of 3 fill a batch each.
    assert batches == {"all": 1, "all1": 5}

    evaluation = PuzzleDataset(ds.config.model_copy(update=dict(test_set_mode=True)), split="test")
    walked = [(set_name, batch["puzzle_identifiers"].clone(), n) for set_name, batch, n in evaluation]
    assert [(set_name, n) for set_name, _, n in walked] == [("all", 3)] * 4 + [("all1", 3)] * 5  # 12, then 15
    ids_b = np.concatenate([ids.numpy() for set_name, ids, _ in walked if set_name == "all1"])
    test_b = b["test"]["all"]
    assert np.array_equal(ids_b, test_b["puzzle_identifiers"][test_b["example_puzzle"]] + 7)
    assert evaluation.source_of("all1")[0] == 1


def test_datasets_that_disagree_are_named(tmp_path):
    write_tiny_dataset(tmp_path / "a", vocab_size=8)
    write_tiny_dataset(tmp_path / "b", vocab_size=9)
    from dataset.puzzle_dataset import DatasetFormatError

    with pytest.raises(DatasetFormatError, match=r"data_paths: .*/b does not agree with .*/a: vocab_size 9 "
                                                 r"\(first: 8\)"):
        PuzzleDataset(PuzzleDatasetConfig(seed=0, dataset_paths=[str(tmp_path / "a"), str(tmp_path / "b")],
                                          global_batch_size=2, test_set_mode=False, epochs_per_iter=1, rank=0,
                                          num_replicas=1))
