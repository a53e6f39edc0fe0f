"""utils/cli.py: how every tool reads key=value arguments, prints --help, and ends on a user error or Ctrl-C."""
from typing import List, Optional

import pydantic
import pytest

from utils.cli import parse_overrides, run_command
from utils.errors import ConfigError, UserError


class Inner(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    augmentations: int = 1


class Schema(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    checkpoint: str = pydantic.Field(description="the model file")
    puzzle: Optional[str] = None
    steps: int = pydantic.Field(10, gt=0)
    outputs: List[str] = []
    verbose: bool = False
    block: Inner = Inner()
    files: List[str] = []


def test_values_nested_keys_lists_and_hydra_plus():
    config = parse_overrides(Schema, ["checkpoint=a/step_5", "steps=3", "outputs=[preds,labels]",
                                      "block.augmentations=8", "+verbose=true"])
    assert (config.checkpoint, config.steps, config.outputs, config.block.augmentations, config.verbose) == (
        "a/step_5", 3, ["preds", "labels"], 8, True)


def test_a_text_key_keeps_the_text_as_typed():
    # YAML would read 007 as the number 7 and 1e3 as a float: a text key takes the characters given.
    config = parse_overrides(Schema, ["checkpoint=007", "puzzle=0012..3e4"])
    assert config.checkpoint == "007" and config.puzzle == "0012..3e4"


@pytest.mark.parametrize("argv, fragment", [
    (["checkpoint=a", "stepz=3"], "unknown config key 'stepz'"),
    (["checkpoint=a", "steps=0"], "steps: Input should be greater than 0"),
    (["checkpoint=a", "block.augment=2"], "unknown config key 'block.augment'"),
    (["checkpoint"], "expected key=value, got 'checkpoint'"),
    ([], "checkpoint: Field required"),
])
def test_bad_command_lines_are_one_config_error(argv, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_overrides(Schema, argv)


def test_flags_of_earlier_versions_and_positional_arguments():
    config = parse_overrides(Schema, ["a_0", "a_1", "--checkpoint", "c", "--steps=4", "--verbose", "-o", "x"],
                             positional="files", aliases={"o": "puzzle"})
    assert (config.files, config.checkpoint, config.steps, config.verbose, config.puzzle) == (
        ["a_0", "a_1"], "c", 4, True, "x")
    with pytest.raises(ConfigError, match="expected key=value, got 'a_0'"):
        parse_overrides(Schema, ["a_0", "checkpoint=c"])


def test_help_lists_every_key_with_its_default_and_the_description(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_overrides(Schema, ["--help"], "Do a thing.\n\n    python -m tools.thing checkpoint=...")
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("Do a thing.") and "python -m tools.thing checkpoint=..." in text
    for line in ("checkpoint", "(required)", "the model file", "steps", "default 10", "block.augmentations",
                 "default 1"):
        assert line in text


def test_run_command_ends_a_user_error_and_ctrl_c_with_one_line(capsys, monkeypatch):
    def fails(argv):
        raise UserError(f"cannot use {argv[0]}")

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_command(lambda argv: None, []) == 0
    assert run_command(fails, ["x.bin"]) == 2
    assert capsys.readouterr().err == "error: cannot use x.bin\n"
    assert run_command(interrupted, []) == 130
    assert capsys.readouterr().err == "interrupted\n"
    monkeypatch.setenv("RANK", "1")  # under torchrun only rank 0 prints the line
    assert run_command(fails, ["x.bin"]) == 2
    assert capsys.readouterr().err == ""


def test_a_bug_is_not_a_user_error():
    def buggy(argv):
        raise KeyError("oops")

    with pytest.raises(KeyError):
        run_command(buggy, [])
