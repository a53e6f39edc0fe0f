"""The "module@Class" names that configs use for models, loss heads and evaluators (HRM's convention, e.g.
"hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"). Which package a module name lives in is the registries' business
(models/registry.py, tasks/__init__.py); this only imports the class and says clearly what is wrong."""
import importlib
import inspect
from typing import Callable, Tuple

from utils.errors import UserError


class ClassNotFoundError(UserError, ImportError):
    """A "module@Class" name from a config does not resolve; the message lists what is available."""


def split_name(identifier: str) -> Tuple[str, str]:
    """("module", "Class") of "module@Class"."""
    parts = identifier.split("@")
    if len(parts) != 2 or not all(parts):
        raise ClassNotFoundError(f"expected a name of the form 'module@Class', got {identifier!r}")
    return parts[0], parts[1]


def import_class(identifier: str, module_path: Callable[[str], str]) -> type:
    """The class `identifier` ("module@Class") names, from the module `module_path(module)`."""
    module_name, class_name = split_name(identifier)
    path = module_path(module_name)
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as err:
        if err.name is None or not path.startswith(err.name):
            raise  # the module exists but one of *its* imports is missing: not a naming error
        raise ClassNotFoundError(f"no module '{path}' for {identifier!r}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        offered = sorted(name for name, obj in vars(module).items()
                         if inspect.isclass(obj) and obj.__module__ == module.__name__)
        raise ClassNotFoundError(f"module '{path}' has no class {class_name!r}; it offers: "
                                 f"{', '.join(offered) or 'nothing'}")
    return cls
