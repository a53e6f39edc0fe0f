"""tools/visualizer.html in a real headless Chromium: a built dataset and exported predictions render as grids.

Chromium is Debian's `chromium` package, which `make test` installs once (the Makefile's `browser` target). Without
it the browser tests are skipped, except under CI=true, where a missing browser is a failure: CI must run them.
"""
import html.parser
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from tasks.sudoku.build_mini import build as build_mini_sudoku
from tests.helpers import REPO, write_tiny_dataset
from tools import export_predictions
from tools.serve_visualizer import make_server, serve_in_thread

TOOLS = os.path.join(REPO, "tools")
# Example 1 of the test split gets these cells wrong in the fake predictions (cell index -> wrong token).
WRONG_CELLS = {0: None, 5: None, 15: None}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=10000"]


@pytest.fixture(scope="session")
def chromium():
    path = shutil.which("chromium")
    if path is None:
        message = "chromium is not installed: `make browser` (or apt-get install chromium) installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_chromium(chromium, profile, *args, timeout=180):
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def sudoku(tmp_path_factory):
    path = tmp_path_factory.mktemp("vis") / "sudoku4"
    build_mini_sudoku(str(path), 2, 2, 20, 5, seed=0)
    return path


@pytest.fixture(scope="module")
def preds_npz(sudoku, tmp_path_factory):
    """Fake saved outputs (the labels, with WRONG_CELLS of test example 1 changed), exported for the page."""
    inputs = np.load(sudoku / "test" / "all__inputs.npy").astype(np.int64)
    labels = np.load(sudoku / "test" / "all__labels.npy").astype(np.int64)
    preds = labels.copy()
    for cell in WRONG_CELLS:
        preds[1, cell] = 2 + (labels[1, cell] - 2 + 1) % 4  # another digit
    run = tmp_path_factory.mktemp("run")
    torch.save({"inputs": torch.from_numpy(inputs).int(), "labels": torch.from_numpy(labels).int(),
                "preds": torch.from_numpy(preds), "q_halt_logits": torch.linspace(-1, 1, len(preds)),
                "puzzle_identifiers": torch.zeros(len(preds), dtype=torch.int32)}, run / "step_10_all_preds.0")
    out = run / "preds.npz"
    assert export_predictions.main([str(run / "step_10_all_preds.0"), "--output", str(out),
                                    "--data-path", str(sudoku)]) == 0
    return out, preds


@pytest.fixture(scope="module")
def others(tmp_path_factory):
    """Tiny maze- and ARC-shaped datasets (random tokens) in other array layouts: int64, format 2.0, Fortran."""
    root = tmp_path_factory.mktemp("shapes")
    write_tiny_dataset(str(root / "maze"), vocab_size=6, seq_len=900, groups=2, puzzles_per_group=1,
                       examples_per_puzzle=1, dtype=np.int64, task="maze")
    write_tiny_dataset(str(root / "arc"), vocab_size=12, seq_len=900, groups=2, puzzles_per_group=2,
                       examples_per_puzzle=2, ignore_label_id=0)  # no task named: ARC's shape tells it
    test = root / "arc" / "test"
    inputs = np.load(test / "all__inputs.npy")
    with open(test / "all__inputs.npy", "wb") as f:
        np.lib.format.write_array(f, inputs, version=(2, 0))
    np.save(test / "all__labels.npy", np.asfortranarray(np.load(test / "all__labels.npy")))
    return root


@pytest.fixture(scope="module")
def server(sudoku, preds_npz, others):
    httpd = make_server({"/tools/": TOOLS, "/data/": str(sudoku), "/preds.npz": str(preds_npz[0]),
                         "/maze/": str(others / "maze"), "/arc/": str(others / "arc")})
    serve_in_thread(httpd)
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class GridParser(html.parser.HTMLParser):
    """Collects `.grid` elements (by data-role) with their `.cell` children as [classes, data-token, text], the
    text of every element with an id, and the body's attributes."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.grids, self.body, self.ids = {}, {}, {}
        self._stack = []  # (tag, id, grid role or None, cell or None)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag in self.VOID:
            return
        classes = (attrs.get("class") or "").split()
        element_id = attrs.get("id")
        if element_id:
            self.ids[element_id] = ""
        grid = cell = None
        if tag == "div" and "grid" in classes:
            grid = attrs.get("data-role")
            self.grids[grid] = []
        elif tag == "div" and "cell" in classes:
            parents = [g for _, _, g, _ in self._stack if g is not None]
            if parents:
                cell = [set(classes), int(attrs["data-token"]), ""]
                self.grids[parents[-1]].append(cell)
        self._stack.append((tag, element_id, grid, cell))

    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                return

    def handle_data(self, data):
        for _, element_id, _, cell in self._stack:
            if element_id:
                self.ids[element_id] += data
            if cell is not None:
                cell[2] += data


def dump_dom(chromium, tmp_path, url):
    parser = GridParser()
    parser.feed(run_chromium(chromium, tmp_path / "profile", "--dump-dom", url))
    return parser


def test_page_is_self_contained():
    with open(os.path.join(TOOLS, "visualizer.html"), encoding="utf-8") as f:
        page = f.read()
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page


def test_server_answers_byte_ranges(server, sudoku):
    whole = (sudoku / "test" / "all__inputs.npy").read_bytes()
    request = urllib.request.Request(f"{server}/data/test/all__inputs.npy", headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206 and response.read() == whole[10:20]
    request = urllib.request.Request(f"{server}/data/test/all__inputs.npy", headers={"Range": "bytes=-5"})
    with urllib.request.urlopen(request) as response:
        assert response.read() == whole[-5:]
    with urllib.request.urlopen(f"{server}/data/test/all__inputs.npy") as response:
        assert response.status == 200 and response.read() == whole
    for bad in ("/data/../../etc/passwd", "/data/%2e%2e/%2e%2e/etc/passwd", "/nothing", "/data/test/missing.npy"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server}{bad}")
        assert err.value.code == 404


def digit(token):
    return str(token - 1) if token >= 2 else ""


def test_dom_shows_input_label_and_prediction_grids(chromium, server, sudoku, preds_npz, tmp_path):
    dom = dump_dom(chromium, tmp_path, f"{server}/tools/visualizer.html?data=/data/&preds=/preds.npz&example=1")
    assert dom.body.get("data-state") == "ready", dom.ids.get("status")
    assert set(dom.grids) == {"input", "label", "pred"}, "the page rendered no grid"
    inputs = np.load(sudoku / "test" / "all__inputs.npy")[1]
    labels = np.load(sudoku / "test" / "all__labels.npy")[1]
    preds = preds_npz[1][1]
    for role, tokens in (("input", inputs), ("label", labels), ("pred", preds)):
        cells = dom.grids[role]
        assert len(cells) == 16, role
        assert [c[1] for c in cells] == tokens.tolist(), role
        assert [c[2].strip() for c in cells] == [digit(t) for t in tokens], role
    wrong = [i for i, c in enumerate(dom.grids["pred"]) if "wrong" in c[0]]
    assert wrong == sorted(WRONG_CELLS)
    assert [i for i, c in enumerate(dom.grids["input"]) if "clue" in c[0]] == np.flatnonzero(inputs >= 2).tolist()
    assert "exact-accuracy" in dom.ids and dom.ids["exact-accuracy"].strip() == "80.0%"  # 4 of 5 exact
    assert dom.ids["puzzle-id"].strip() == "0" and dom.ids["puzzle-name"].strip() == "<blank>"


def test_folder_picker_path_renders_the_training_split(chromium, server, sudoku, tmp_path):
    # via=files: the page wraps the fetched files as File objects and loads them like a picked folder.
    dom = dump_dom(chromium, tmp_path, f"{server}/tools/visualizer.html?data=/data/&via=files&split=train&example=7")
    assert dom.body.get("data-state") == "ready", dom.ids.get("status")
    assert set(dom.grids) == {"input", "label"}
    expected = np.load(sudoku / "train" / "all__inputs.npy")[7]
    assert [c[1] for c in dom.grids["input"]] == expected.tolist()


@pytest.mark.parametrize("name, task, cells", [("maze", "maze", 900), ("arc", "arc", 900)])
def test_other_tasks_and_array_layouts(chromium, server, others, tmp_path, name, task, cells):
    dom = dump_dom(chromium, tmp_path, f"{server}/tools/visualizer.html?data=/{name}/&split=test&example=1")
    assert dom.body.get("data-state") == "ready", dom.ids.get("status")
    assert f"task {task}" in dom.ids["info"]
    inputs = np.load(others / name / "test" / "all__inputs.npy")[1]
    labels = np.load(others / name / "test" / "all__labels.npy")[1]
    assert [c[1] for c in dom.grids["input"]] == inputs.tolist()
    assert [c[1] for c in dom.grids["label"]] == labels.tolist()
    assert len(dom.grids["input"]) == cells


def test_screenshot(chromium, server, tmp_path):
    import matplotlib.image

    png = tmp_path / "page.png"
    run_chromium(chromium, tmp_path / "profile", f"--screenshot={png}", "--window-size=1200,900",
                 f"{server}/tools/visualizer.html?data=/data/&preds=/preds.npz&example=1")
    assert png.stat().st_size > 10_000
    image = matplotlib.image.imread(str(png))[..., :3]
    assert image.shape[:2] == (900, 1200)
    colours = {tuple(int(round(255 * v)) for v in px) for px in image.reshape(-1, 3)[::7]}
    assert len(colours) > 20  # not a blank page
    assert (253, 162, 155) in colours  # wrong predicted cells (#fda29b)
    assert (233, 237, 245) in colours  # clue cells (#e9edf5)


# ---------------------------------------------------------------------------------------------------------------
# Exporter


def test_export_reassembles_ranks(sudoku, tmp_path):
    """Two ranks of a global batch of 4 over 5 test examples: rank 0 saved rows 0,1,4; rank 1 rows 2,3."""
    labels = np.load(sudoku / "test" / "all__labels.npy").astype(np.int64)
    inputs = np.load(sudoku / "test" / "all__inputs.npy").astype(np.int64)
    order = export_predictions.rank_row_order([5], global_batch_size=4, world_size=2)
    assert [o.tolist() for o in order] == [[0, 1, 4], [2, 3]]
    for rank, rows in enumerate(order):
        torch.save({"preds": torch.from_numpy(labels[rows]), "inputs": torch.from_numpy(inputs[rows]),
                    "logits": torch.zeros(len(rows), 16, 6)}, tmp_path / f"step_5_all_preds.{rank}")
    out = tmp_path / "preds.npz"
    assert export_predictions.main([str(tmp_path / "step_5_all_preds.0"), "--output", str(out), "--data-path",
                                    str(sudoku), "--global-batch-size", "4"]) == 0
    with np.load(out) as z:
        assert sorted(z.files) == ["inputs", "preds"]  # logits left out
        assert np.array_equal(z["preds"], labels) and z["preds"].dtype == np.uint8
    # A wrong batch size does not reassemble into the dataset's order: refused, not silently shuffled.
    assert export_predictions.main([str(tmp_path / "step_5_all_preds.0"), str(tmp_path / "step_5_all_preds.1"),
                                    "--output", str(out), "--data-path", str(sudoku),
                                    "--global-batch-size", "2"]) == 2
    npy = tmp_path / "preds.npy"
    assert export_predictions.main([str(tmp_path / "step_5_all_preds.0"), "--output", str(npy), "--data-path",
                                    str(sudoku), "--global-batch-size", "4"]) == 0
    assert np.array_equal(np.load(npy), labels)
