"""The packages form layers, and no import goes up a layer or round a cycle (docs/DESIGN.md §1).

    utils -> dataset -> models -> evaluators -> tasks -> training -> tools -> scripts, benchmarks, pretrain.py,
    evaluate.py

A module may import its own layer and the layers to its left; `utils` holds leaf helpers, which import nothing of
ours but the base class of user errors (utils/errors.py). No two modules import each other, directly or through
others, whichever layer they are in. A command that only names another (a module that defines nothing: a docstring,
imports and its `if __name__ == "__main__":` block, e.g. dataset/build_sudoku_dataset.py, the Sudoku builder under
the name the original trainers use) is an entry point like pretrain.py, above every layer, wherever its file is.
"""
import ast
import os
from typing import Dict, List, Optional, Set

from tests.helpers import REPO

LAYERS = [["utils"], ["dataset"], ["models"], ["evaluators"], ["tasks"], ["training"], ["tools"],
          ["scripts", "benchmarks", "pretrain", "evaluate"]]
ENTRY_POINTS = len(LAYERS) - 1
# The one module of ours that utils' helpers may import: the base class of user errors.
UTILS_BASE = "utils.errors"


def layer_of(module: str, commands: Set[str] = frozenset()) -> Optional[int]:
    if module in commands:
        return ENTRY_POINTS
    top = module.split(".")[0]
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def is_command_only(tree: ast.Module) -> bool:
    """Whether a module defines nothing: only a docstring, imports and an `if __name__ == "__main__":` block."""
    def main_guard(node: ast.stmt) -> bool:
        return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")

    body = tree.body[1:] if tree.body and isinstance(tree.body[0], ast.Expr) else tree.body
    return bool(body) and main_guard(body[-1]) and all(isinstance(node, (ast.Import, ast.ImportFrom))
                                                      for node in body[:-1])


def module_name(path: str, root: str) -> str:
    name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
    return name.removesuffix(".__init__")


def parse(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def imports_of(path: str, module: str, known: Set[str]) -> Set[str]:
    """The modules of ours that `path` imports, anywhere in the file (functions and TYPE_CHECKING blocks too)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(parse(path)):
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


def module_paths(root: str) -> Dict[str, str]:
    paths = {}
    for top in (name for names in LAYERS for name in names):
        if os.path.isfile(os.path.join(root, top + ".py")):
            paths[top] = os.path.join(root, top + ".py")
        for folder, _, files in os.walk(os.path.join(root, top)):
            for file in files:
                if file.endswith(".py"):
                    path = os.path.join(folder, file)
                    paths[module_name(path, root)] = path
    return paths


def import_graph(root: str) -> Dict[str, Set[str]]:
    paths = module_paths(root)
    return {module: imports_of(path, module, set(paths)) for module, path in paths.items()}


def command_modules(root: str) -> Set[str]:
    """The modules that only name a command (see the module docstring)."""
    return {module for module, path in module_paths(root).items() if is_command_only(parse(path))}


def layering_problems(graph: Dict[str, Set[str]], commands: Set[str] = frozenset()) -> List[str]:
    """Every upward import, and every cycle (named by its modules in import order)."""
    problems = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            layer, target_layer = layer_of(module, commands), layer_of(target, commands)
            if layer == 0 and target_layer is not None and target != UTILS_BASE:
                problems.append(f"{module} imports {target}: utils holds leaf helpers that import nothing of ours")
            elif target_layer > layer:
                problems.append(f"{module} imports {target}, a higher layer")
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
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
    assert layering_problems(import_graph(REPO), command_modules(REPO)) == []


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


def test_a_command_that_only_names_another_is_an_entry_point(tmp_path):
    """A builder kept under its old name imports its task's package from dataset/; a module that also defines
    something is library code, and the same import is upward."""
    files = {"dataset/__init__.py": "", "tasks/__init__.py": "", "tasks/sudoku.py": "def main(argv): pass\n",
             "dataset/build_sudoku.py": '"""Old name."""\nimport sys\n\nfrom tasks.sudoku import main\n\n'
                                        'if __name__ == "__main__":\n    sys.exit(main(sys.argv[1:]))\n',
             "dataset/helper.py": 'from tasks.sudoku import main\n\n\ndef run():\n    main([])\n\n\n'
                                  'if __name__ == "__main__":\n    run()\n'}
    root = write(tmp_path, files)
    assert command_modules(root) == {"dataset.build_sudoku"}
    assert layering_problems(import_graph(root), command_modules(root)) == [
        "dataset.helper imports tasks.sudoku, a higher layer"]
