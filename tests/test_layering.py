"""The packages form layers, and no import goes up a layer or round a cycle (docs/DESIGN.md §1).

    utils -> dataset -> models -> evaluators -> training -> tools -> scripts, benchmarks, pretrain.py, evaluate.py

A module may import its own layer and the layers to its left; `utils` holds leaf helpers, which import nothing of
ours but the base class of user errors (utils/errors.py). No two modules import each other, directly or through
others, whichever layer they are in.
"""
import ast
import os
from typing import Dict, List, Optional, Set

from tests.helpers import REPO

LAYERS = [["utils"], ["dataset"], ["models"], ["evaluators"], ["training"], ["tools"],
          ["scripts", "benchmarks", "pretrain", "evaluate"]]
# Deprecated command names kept working by a module that only hands over to the new one (an upward import).
FORWARDERS = {"utils.solve": "tools.solve"}
# The one module of ours that utils' helpers may import: the base class of user errors.
UTILS_BASE = "utils.errors"


def layer_of(module: str) -> Optional[int]:
    top = module.split(".")[0]
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def module_name(path: str, root: str) -> str:
    name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
    return name.removesuffix(".__init__")


def imports_of(path: str, module: str, known: Set[str]) -> Set[str]:
    """The modules of ours that `path` imports, anywhere in the file (functions and TYPE_CHECKING blocks too)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from package import module` imports the module; `from module import name`, the module
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # `from pkg import module` or `from module import name`
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(root: str) -> Dict[str, Set[str]]:
    paths = {}
    for top in (name for names in LAYERS for name in names):
        if os.path.isfile(os.path.join(root, top + ".py")):
            paths[top] = os.path.join(root, top + ".py")
        for folder, _, files in os.walk(os.path.join(root, top)):
            for file in files:
                if file.endswith(".py"):
                    path = os.path.join(folder, file)
                    paths[module_name(path, root)] = path
    return {module: imports_of(path, module, set(paths)) for module, path in paths.items()}


def layering_problems(graph: Dict[str, Set[str]]) -> List[str]:
    """Every upward import, and every cycle (named by its modules in import order)."""
    problems = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if FORWARDERS.get(module) == target:
                continue
            if layer_of(module) == 0 and layer_of(target) is not None and target != UTILS_BASE:
                problems.append(f"{module} imports {target}: utils holds leaf helpers that import nothing of ours")
            elif layer_of(target) > layer_of(module):
                problems.append(f"{module} imports {target}, a higher layer")
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if FORWARDERS.get(module) == target:
                continue
            if state.get(target) == 1:
                problems.append("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return problems


def test_the_packages_are_layered_without_cycles():
    assert layering_problems(import_graph(REPO)) == []


def write(root, files: Dict[str, str]) -> str:
    for name, text in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return str(root)


def test_an_upward_import_is_named(tmp_path):
    root = write(tmp_path, {"dataset/__init__.py": "", "dataset/loader.py": "def load(): from models import act\n",
                            "models/__init__.py": "", "models/act.py": ""})
    assert layering_problems(import_graph(root)) == ["dataset.loader imports models.act, a higher layer"]


def test_utils_may_import_nothing_of_ours(tmp_path):
    root = write(tmp_path, {"utils/__init__.py": "", "utils/a.py": "", "utils/b.py": "from utils.a import x\n"})
    assert layering_problems(import_graph(root)) == [
        "utils.b imports utils.a: utils holds leaf helpers that import nothing of ours"]


def test_a_cycle_is_named_with_its_modules(tmp_path):
    root = write(tmp_path, {"training/__init__.py": "", "training/a.py": "from training.b import f\n",
                            "training/b.py": "from . import c\n", "training/c.py": "import training.a\n"})
    assert layering_problems(import_graph(root)) == [
        "import cycle: training.a -> training.b -> training.c -> training.a"]
