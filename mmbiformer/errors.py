"""Errors that say what was given wrong and what is expected: the tools print them as
one line, without a traceback."""


class ArgumentError(ValueError):
    """A bad value of a model's or an op's argument, as a config or a caller gives it
    (a ``ValueError``: code that catches those keeps working)."""
