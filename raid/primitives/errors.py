"""The exception types for mistakes a user can fix (bad paths, bad files, bad options).

The command line prints a `RaidError` as a single line without a traceback; anything else
is a bug and keeps its traceback. `RaidInputError` marks bad values handed to a library
call (arrays, labels, parameters): it is also a `ValueError`, as scikit-learn and Python
conventions expect of invalid arguments.
"""


class RaidError(Exception):
    """A user-facing error: the message names the file (when there is one) and the reason."""

    def __init__(self, message: str, path: object | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{path}: {message}" if path is not None else message)


class RaidInputError(RaidError, ValueError):
    """A bad argument value (array shape, label, parameter): a `RaidError` and a `ValueError`."""
