"""Errors that say what was given wrong and what is expected: the tools print them as
one line, without a traceback."""


class ArgumentError(ValueError):
    """A bad value of a model's or an op's argument, as a config or a caller gives it
    (a ``ValueError``: code that catches those keeps working)."""


class UserError(Exception):
    """An error the user can fix; tools print it without a traceback."""


def error_summary(e: BaseException) -> str:
    """``Type: message`` on one line: the reason a decoder gave, for a message that
    names the file itself."""
    lines = str(e).strip().splitlines()
    return f'{type(e).__name__}: {lines[0] if lines else ""}'.strip()
