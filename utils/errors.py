"""The base of every error the user can fix: a config value, a file, a path, a device, a request.

Every command of the project (pretrain.py, evaluate.py, tools/*, the dataset builders) ends such an error with
one line, `error: <message>`, and exit status 2 (utils/cli.py); anything else is a bug and keeps its traceback.
The specific errors (ConfigError below, DatasetFormatError, CheckpointError, ...) live next to the code that
raises them and subclass UserError, so a message names what is wrong and what to change.
"""


class UserError(Exception):
    """Bad input or an impossible request; the message is one line that says what to change."""


class ConfigError(UserError, ValueError):
    """A config value or command-line key that cannot work; the message names the key and what to change."""
