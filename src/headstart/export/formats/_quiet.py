"""Keeping converters' and runtimes' own logging off the user's terminal."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys


@contextlib.contextmanager
def native_output_silenced():
    """The converter, LiteRT and MediaPipe log from C++ straight to file descriptors 1 and 2 (absl,
    XNNPACK); inside this, those lines go nowhere instead of onto the user's terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


@contextlib.contextmanager
def logger_quieted(name: str | None = None):
    """Python logging from `name` (default: the root logger) below ERROR dropped inside this."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
