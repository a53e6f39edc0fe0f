"""Models by the names configs give them: `arch.name` ("hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
"recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1", "urm.urm@URM") and `arch.loss.name` ("losses@ACTLossHead"),
each a module under models/ and a class in it. A new recursion core is one file here and one config/arch/*.yaml
(docs/DESIGN.md, "How to add a core"): its name resolves without being listed anywhere."""
import inspect
from typing import List

from utils.names import import_class


def model_class(identifier: str) -> type:
    """The class of a model or loss head name, "module@Class" under models/."""
    return import_class(identifier, lambda module: f"models.{module}")


def model_source_files(identifier: str) -> List[str]:
    """Source files that define `identifier`'s class: its own file, then those of its base classes from models/
    (for a model: the recursion core and the shared ACT machinery), to copy beside checkpoints."""
    paths = []
    for base in inspect.getmro(model_class(identifier)):
        if base.__module__.split(".")[0] == "models":
            path = inspect.getfile(base)
            if path not in paths:
                paths.append(path)
    return paths
