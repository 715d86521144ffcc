"""The one exception type users see: the CLI prints it as a single line, no traceback."""


class HeadstartError(Exception):
    """A problem with the user's input or environment, worded so the user can fix it."""
