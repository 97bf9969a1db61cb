"""The one exception type the CLI turns into a one-line error message."""


class InputError(ValueError):
    """Bad user input: a missing file, a malformed row, an unknown key or stage.

    The message names the file, line and field where known; ``ttc`` prints it on one line and exits
    non-zero instead of showing a traceback.
    """
