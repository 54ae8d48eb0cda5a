"""The one user-facing error type.

Anything the user can fix (a missing file, a wrong flag, data that does not fit the model)
raises DeadReluError with one sentence that names the file and what is wrong. The CLI turns it
into a single stderr line and exit code 2; every other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations


class DeadReluError(Exception):
    """A problem with the user's input: one line, exit code 2."""

    def __init__(self, message: str, *, path: object | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-blank line of an exception's message (its type's name when it has
    none), at most ``limit`` characters: what a one-line error quotes of a library's error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def user_code_failure(exc: BaseException) -> str:
    """How user code (an --arch factory, a --data function) failed: "raised ValueError: …",
    or "called sys.exit(3)" (a SystemExit left alone would end deadrelu with the user's exit
    code and no report)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return f"raised {type(exc).__name__}: {first_line(exc)}"


def a_type(obj: object) -> str:
    """``obj``'s type with its article, for messages: "a list", "an int", "an OrderedDict"."""
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun`` in agreement, thousands separated: "1 sample", "2,000 samples"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
