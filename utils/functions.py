"""Resolve "module@Class" names from configs (e.g. "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1")."""
import importlib
import inspect
from typing import List

from utils.errors import UserError


class ClassNotFoundError(UserError, ImportError):
    """A "module@Class" name from a config does not resolve; the message lists what is available."""


def _split(identifier: str) -> List[str]:
    parts = identifier.split("@")
    if len(parts) != 2 or not all(parts):
        raise ClassNotFoundError(f"expected a name of the form 'module@Class', got {identifier!r}")
    return parts


def load_model_class(identifier: str, prefix: str = "models."):
    """Import `prefix + module` and return its attribute `Class`."""
    module_path, class_name = _split(identifier)
    try:
        module = importlib.import_module(prefix + module_path)
    except ModuleNotFoundError as err:
        if err.name is None or not (prefix + module_path).startswith(err.name):
            raise  # the module exists but one of *its* imports is missing: not a naming error
        raise ClassNotFoundError(f"no module '{prefix}{module_path}' for {identifier!r}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        offered = sorted(name for name, obj in vars(module).items()
                         if inspect.isclass(obj) and obj.__module__ == module.__name__)
        raise ClassNotFoundError(f"module '{prefix}{module_path}' has no class {class_name!r}; "
                                 f"it offers: {', '.join(offered) or 'nothing'}")
    return cls


def get_model_source_paths(identifier: str, prefix: str = "models.") -> List[str]:
    """Source files that define `identifier`'s class: its own file, then those of its base classes from the same
    package (for a model: the recursion core and the shared ACT machinery), to copy beside checkpoints."""
    cls = load_model_class(identifier, prefix)
    package = prefix.rstrip(".")
    paths = []
    for base in inspect.getmro(cls):
        if base.__module__.split(".")[0] == package:
            path = inspect.getfile(base)
            if path not in paths:
                paths.append(path)
    return paths
