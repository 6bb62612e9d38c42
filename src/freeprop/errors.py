"""User-facing errors.

A `FreePropInputError` means the *user's input* is wrong (a missing file, an unreadable video, a bad
size or config key). Its message is one line that names the culprit and says how to fix it; the CLI
prints it without a traceback and exits with status 2. Anything else is a bug and keeps its traceback.
"""


class FreePropInputError(ValueError):
    """Bad user input: a one-line message naming what is wrong and how to fix it."""
