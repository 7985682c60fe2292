"""Atomic file writes (torch-free: the on-device runtime uses it too).

Everything the project writes — checkpoints, manifests, weights, tokenizers, audio, plots — goes
through `atomic_write`: a temp file in the same folder, fsync, then rename, so a reader (or a
crash, or a full disk) sees the old file or the new one, never half of one.

Temp files and folders are removed by `finally`/`with` blocks. SIGTERM and SIGHUP (a service
manager stopping the job, a closed terminal) would kill the process without running them, so
commands that build temp folders run inside `signals_raise()`, which turns them into an exception.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Callable

TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A termination signal arrived (BaseException, like KeyboardInterrupt, so that `except
    Exception` handlers do not swallow it)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")


@contextlib.contextmanager
def signals_raise(signals: tuple[int, ...] = TERMINATION_SIGNALS) -> Iterator[None]:
    """Within the block, the first of `signals` raises Terminated in the main thread (so cleanup
    runs); later ones are ignored until the block ends, so they cannot interrupt that cleanup."""

    def handler(signum, _frame):
        for s in signals:
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# Where scripts/setup.sh leaves the pinned PyPI files that the data builders read.
PACKAGE_DIR = Path(os.environ.get("DUALASR_PACKAGES", "~/.cache/dualasr/packages")).expanduser()


def user_cache_dir() -> Path:
    """The folder dualasr caches in: $XDG_CACHE_HOME/dualasr, else ~/.cache/dualasr (not created here)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dualasr"


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None]) -> None:
    """Write bytes, UTF-8 text, or whatever `data(fileobj)` writes, to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; exports are meant to be copied and read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
