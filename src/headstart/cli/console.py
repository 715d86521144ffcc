"""The command line's two consoles and its progress display."""

from __future__ import annotations

from rich.console import Console

out = Console(highlight=False, soft_wrap=True)  # never break a path or a message in two
err = Console(stderr=True, highlight=False, soft_wrap=True)


def events(args):
    """The progress display for a command's `--quiet`."""
    from ..progress import event_bus

    return event_bus(quiet=args.quiet)
