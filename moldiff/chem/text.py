"""Text from molecule files made safe: for the terminal (escaped excerpts) and for output files (one-line
titles). Every message that quotes file content goes through :func:`printable`."""
from __future__ import annotations

EXCERPT = 60
"""Characters of file content quoted in a message at most (then "…")."""


def printable(text: str, limit: int = EXCERPT) -> str:
    """``text`` safe for a terminal: control characters and escape sequences written as escapes (``\\x1b``),
    at most ``limit`` characters of the result (then "…")."""
    out: list[str] = []
    size = 0
    for c in text:
        piece = c if c.isprintable() else repr(c)[1:-1]
        if size + len(piece) > limit:
            return "".join(out) + "…"
        out.append(piece)
        size += len(piece)
    return "".join(out)


def clean_title(text: str) -> str:
    """A molecule title fit for one line of an output file: control characters (newlines, escapes, NUL) become
    spaces and runs of white space one space."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())
