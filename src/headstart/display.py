"""User-supplied text (file and class names) made safe to show: any bytes a file name may hold,
on a strict UTF-8 terminal, in a plot, or in a spreadsheet."""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets run as a formula (OWASP CSV injection)


def printable(text: str) -> str:
    """`text` with the undecodable bytes of a non-UTF-8 file name shown as \\xNN, as `ls -b` would.

    >>> printable("caf\\udce9.jpg")
    'caf\\\\xe9.jpg'
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def spreadsheet_cell(text: str) -> str:
    """A CSV text cell that Excel or LibreOffice shows as text instead of running it as a formula.
    A non-UTF-8 file name's bytes are left as they are (surrogate escapes): the stream or file
    writing the CSV decides whether they go out as the original bytes or as \\xNN.

    >>> spreadsheet_cell("=HYPERLINK(\\"http://x\\")"), spreadsheet_cell("cats")
    ('\\'=HYPERLINK("http://x")', 'cats')
    """
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def is_utf8(text: str) -> bool:
    """Whether `text` holds no undecodable file-name bytes (surrogate escapes).

    >>> is_utf8("café.jpg"), is_utf8("caf\\udce9.jpg")
    (True, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plot_text(text: str) -> str:
    """Text for a matplotlib label: `$` is literal (not the start of mathtext), bytes escaped."""
    return printable(text).replace("$", r"\$")
