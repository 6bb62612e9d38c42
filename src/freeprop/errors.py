"""User-facing errors.

A `FreePropInputError` means the *user's input* is wrong (a missing file, an unreadable video, a bad
size or config key). Its message is one line that names the culprit and says how to fix it; the CLI
prints it without a traceback and exits with status 2. Anything else is a bug and keeps its traceback.
"""

import sys


class FreePropInputError(ValueError):
    """Bad user input: a one-line message naming what is wrong and how to fix it."""


def run_script(main, name: str) -> int:
    """Run a command's or a benchmark script's `main()`: a `FreePropInputError` (a wrong path, a bad
    value) becomes one line on stderr, "NAME: error: ...", and exit status 2; anything else keeps its
    traceback."""
    try:
        return main() or 0
    except FreePropInputError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
