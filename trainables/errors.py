"""The one exception type for mistakes a user can make (bad file, flag, key, model name).

CLIs catch it and print a single line to stderr with exit code 2; anything else is a bug and
keeps its traceback.
"""


class UsageError(Exception):
    """A problem in the user's input, described in one line that names the file, line or key."""


def exit_on_usage_error(main):
    """Decorator for CLI entry points: UsageError → one line on stderr, exit code 2."""
    import functools
    import sys

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UsageError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
