"""How every command of the project reads its command line and ends.

Commands other than the dataset builders (which keep the original builders' argparse flags) and pretrain.py
(Hydra) take `key=value` arguments, as evaluate.py always has: OmegaConf's syntax (nested keys with dots, lists
in brackets, a leading `+` accepted as Hydra users type it), checked by the command's pydantic schema.
`--help` prints the command's description, every key with its type, default and meaning, and an example.
A key whose schema type is text takes the text as typed (a Sudoku string of digits stays a string, with its
leading zeros).

`run_command` runs a command's `main` and turns the two ways a user stops it into one line: a UserError
(utils/errors.py) into `error: <message>` and exit status 2, Ctrl-C into `interrupted` and exit status 130.
Under torchrun only rank 0 prints, so a user error reads as one line whatever the number of processes.
"""
import os
import sys
import typing
from typing import Any, Callable, Dict, List, Optional, Sequence, Type, TypeVar

import pydantic
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from utils.errors import ConfigError, UserError

Schema = TypeVar("Schema", bound=pydantic.BaseModel)
HELP_FLAGS = ("-h", "--help")
USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


def format_validation_error(err: pydantic.ValidationError, prefix: str = "") -> str:
    """One phrase per problem, naming the key: 'arch.hidden_size: Input should be ...'; `prefix` goes in front
    of every key (e.g. 'test_time.')."""
    lines = []
    for problem in err.errors():
        where = prefix + (".".join(str(part) for part in problem["loc"]) or "config")
        if problem["type"] == "extra_forbidden":
            lines.append(f"unknown config key '{where}' (check its spelling or remove it)")
        else:
            lines.append(f"{where}: {problem['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def validate(schema: Type[Schema], raw: Dict[str, Any], prefix: str = "", context: Optional[dict] = None) -> Schema:
    """`schema` validated from `raw`, or a ConfigError naming every bad key."""
    try:
        return schema.model_validate(raw, context=context)
    except pydantic.ValidationError as err:
        raise ConfigError(format_validation_error(err, prefix)) from None


def _is_text(annotation: Any) -> bool:
    """str or Optional[str]: a field whose value is text, whatever it looks like."""
    if annotation is str:
        return True
    return typing.get_origin(annotation) is typing.Union and set(typing.get_args(annotation)) == {str, type(None)}


def parse_overrides(schema: Type[Schema], argv: Sequence[str], description: str = "",
                    positional: Optional[str] = None, aliases: Optional[Dict[str, str]] = None) -> Schema:
    """The command line `argv` (key=value ...) as a `schema`; `--help` prints `help_text` and exits 0.

    For commands that took argparse flags before, `--name value` (or `--name=value`, or `--name` alone for a
    yes/no key) reads as name=value (dashes as underscores, `aliases` for short names such as -o), and bare
    arguments go to the key `positional` (a list when its type is one)."""
    if any(arg in HELP_FLAGS for arg in argv):
        print(help_text(schema, description))
        sys.exit(0)
    aliases = aliases or {}
    pairs: List[str] = []
    literal: Dict[str, Any] = {}
    bare: List[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg.startswith("-") and len(arg) > 1 and not arg[1].isdigit():
            name, sep, value = arg.lstrip("-").partition("=")
            name = aliases.get(name, name).replace("-", "_")
            field = schema.model_fields.get(name)
            if not sep:
                if field is not None and field.annotation is bool:
                    value = "true"
                elif args:
                    value = args.pop(0)
                else:
                    raise ConfigError(f"{arg} needs a value (see --help)")
            arg = f"{name}={value}"
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")
        if not sep:
            if positional is None:
                raise ConfigError(f"expected key=value, got {arg!r} (see --help)")
            bare.append(arg)
            continue
        if not key:
            raise ConfigError(f"expected key=value, got {arg!r} (see --help)")
        field = schema.model_fields.get(key)
        if field is not None and _is_text(field.annotation):
            literal[key] = value
        pairs.append(f"{key}={value}")
    if bare:
        if typing.get_origin(schema.model_fields[positional].annotation) in (list, List):
            literal[positional] = bare
        elif len(bare) == 1:
            literal[positional] = bare[0]
        else:
            raise ConfigError(f"expected one {positional}, got {len(bare)}: {' '.join(bare)} (see --help)")
    try:
        raw = OmegaConf.to_container(OmegaConf.from_dotlist(pairs), resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot read the command line: {str(err).splitlines()[0]}") from None
    raw.update(literal)
    return validate(schema, raw)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if typing.get_origin(annotation) is None else None
    return text or str(annotation).replace("typing.", "")


def _describe(schema: Type[pydantic.BaseModel], prefix: str = "") -> List[str]:
    lines = []
    for name, field in schema.model_fields.items():
        nested = field.annotation if isinstance(field.annotation, type) else None
        if nested is not None and issubclass(nested, pydantic.BaseModel):
            lines += _describe(nested, f"{prefix}{name}.")
            continue
        default = "(required)" if field.is_required() else f"default {field.default!r}"
        lines.append(f"  {prefix + name:<26} {_type_name(field.annotation):<22} {default}")
        if field.description:
            lines.append(f"  {'':<26} {field.description}")
    return lines


def help_text(schema: Type[pydantic.BaseModel], description: str) -> str:
    """The command's description (its module docstring: what it does, with examples), then every key."""
    return "\n".join([description.strip(), "", "keys (key=value; nested keys with dots):", *_describe(schema)])


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def report(message: str) -> None:
    """One line on standard error, from rank 0 only (every rank of a torchrun job meets the same error)."""
    if _is_rank_zero():
        print(message, file=sys.stderr, flush=True)


def run_command(main: Callable[[List[str]], Any], argv: Optional[Sequence[str]] = None) -> int:
    """Run `main(argv)` (default: the process's arguments) and return its exit status: 0, 2 on a UserError
    (one line `error: ...`), 130 on Ctrl-C (one line `interrupted`)."""
    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except UserError as err:
        report(f"error: {err}")
        return USER_ERROR_EXIT
    except KeyboardInterrupt:
        report("interrupted")
        return INTERRUPTED_EXIT
    return 0
