"""Every task the trainer knows, one folder each (docs/DESIGN.md, "How to add a task"): a folder tasks/<name>/ whose
`__init__.py` names its codec class `CODEC` (tasks/base.py) is a task; nothing else lists them.

    task_names()         the tasks, by name
    dataset_codec(...)   the codec of a run's datasets: the task their dataset.json names, `task=` for those that
                         name none, else the one task their shape can be (never a guess between two)
    text_codec(...)      the task a puzzle in text form is of (the solve CLI, when the run's dataset is not here)
    evaluator_class(...) a task's evaluator by the name configs give it ("arc@ARC": tasks/arc/evaluator.py, class ARC)
"""
import importlib
import pkgutil
from typing import Dict, List, Optional, Sequence, Type

from dataset.common import PuzzleDatasetMetadata
from tasks.base import TaskCodec, TaskError
from utils.names import import_class


def codec_classes() -> Dict[str, Type[TaskCodec]]:
    """{task name: codec class} of every task folder."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            codec = getattr(importlib.import_module(f"{__name__}.{module.name}"), "CODEC", None)
            if codec is not None:
                if codec.name != module.name:
                    raise TaskError(f"tasks/{module.name}/ names a codec of task {codec.name!r}; a task's folder is "
                                    f"named after it")
                found[codec.name] = codec
    return found


def task_names() -> List[str]:
    return sorted(codec_classes())


def codec_class(name: str) -> Type[TaskCodec]:
    classes = codec_classes()
    if name not in classes:
        raise TaskError(f"task={name}: no such task; the tasks are {', '.join(sorted(classes))}")
    return classes[name]


def _dataset_task(metadata: PuzzleDatasetMetadata, task: Optional[str], where: str) -> Optional[List[str]]:
    """The task names a dataset can be of: its own, else `task`, else those that recognise its shape."""
    if metadata.task is not None:
        if task is not None and task != metadata.task:
            raise TaskError(f"task={task}, but {where} is a {metadata.task} dataset (its dataset.json says so); "
                            f"remove task= or choose a {task} dataset")
        return [metadata.task]
    if task is not None:
        return [task]
    return [name for name, codec in sorted(codec_classes().items()) if codec.recognises(metadata)]


def dataset_codec(metadatas: Sequence[PuzzleDatasetMetadata], task: Optional[str] = None, where: str = "the dataset",
                  needed_for: Optional[str] = None) -> Optional[TaskCodec]:
    """The codec of datasets evaluated together (`metadatas`, one per folder; `where` names them in messages).

    A dataset's task is the one its dataset.json names (this project's builders write it); for one that names none
    (built elsewhere), `task` (the command's task=), else the one task whose original builder writes datasets of its
    shape. Where that is not one task (two tasks fit, or the folders disagree) there is no codec: None, or, when a
    feature needs it (`needed_for` names the feature), a TaskError asking for task=. A dataset that fits no task
    has no codec (None)."""
    candidates = [_dataset_task(metadata, task, where) for metadata in metadatas]
    names = {name for names in candidates for name in names}
    if len(names) == 1 and all(candidates):
        (name,) = names
        codecs = [codec_class(name).from_metadata(metadata) for metadata in metadatas]
        if all(codec.options() == codecs[0].options() for codec in codecs):
            return codecs[0]
        if needed_for is not None:
            raise TaskError(f"{needed_for}: the {name} datasets of {where} differ in their task options "
                            f"({', '.join(str(codec.options()) for codec in codecs)}); evaluate them one at a time")
        return None
    if needed_for is None or not names:
        return None
    metadata = metadatas[0]
    raise TaskError(f"{needed_for}: cannot tell the task of {where}: it could be {' or '.join(sorted(names))} "
                    f"(vocab_size {metadata.vocab_size}, seq_len {metadata.seq_len}, no task in its dataset.json); "
                    f"pass {' or '.join(f'task={name}' for name in sorted(names))}")


def text_codec(text: str, file_name: Optional[str]) -> Type[TaskCodec]:
    """The one task whose text form reads this puzzle (the solve CLI's guess without the run's dataset)."""
    readers = sorted(name for name, codec in codec_classes().items() if codec.reads_text(text, file_name))
    if len(readers) != 1:
        what = "could be " + " or ".join(readers) if readers else "is no task's text form"
        raise TaskError(f"cannot tell the task of the puzzle: it {what}; pass task=<one of "
                        f"{', '.join(task_names())}>")
    return codec_class(readers[0])


def evaluator_class(identifier: str) -> type:
    """A task evaluator by its config name "module@Class": class Class of tasks/<module>/evaluator.py."""
    return import_class(identifier, lambda module: f"{__name__}.{module}.evaluator")
