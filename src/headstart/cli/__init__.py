"""The command line: `headstart COMMAND`, mirroring the Python API one to one.

main.py            the parser (flags grouped by topic) and error handling: one line, exit 2
model_commands.py  train, evaluate, predict, report, export
tool_commands.py   serve, studio, imagenet, backbones, demo
"""

from .main import build_parser, main, run

__all__ = ["build_parser", "main", "run"]
