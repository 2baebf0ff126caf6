"""Errors a user can cause (bad file, bad column, bad config key) and how recipes report them."""

import functools
import sys


class UserError(Exception):
    """A mistake in the user's input. Recipes print it as one line and exit with status 2."""


def exit_on_user_error(fn):
    """Decorator for command-line entry points: a `UserError` becomes `error: <message>` on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
