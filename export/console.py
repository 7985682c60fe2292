"""What `dualasr export` prints: one line per format/precision, everything else to a log file.

The converters print a lot on their own (tracing FutureWarnings, coremltools progress bars,
cpuinfo and "Failed to load" notices from native code, version warnings), from Python and from
C++ alike. `ExportConsole` points the process's stdout and stderr file descriptors at a log file
for the duration of the export, so all of it lands there, and keeps a private handle on the real
terminal for the progress lines. The log is created beside the output folder (the export is
built in a temp folder and renamed into place) and moved to OUT/export.log once the export
succeeded; when it did not, the log stays beside OUT and `log_path` says where.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TextIO

__all__ = ["LOG_NAME", "ExportConsole"]

LOG_NAME = "export.log"


class ExportConsole:
    """Context manager: redirect fds 1 and 2 to a log file; `say` writes to the real terminal;
    `move_into(OUT)` afterwards moves the log into the finished export.

    A message ending in " ..." is a status line: on a terminal it is shown until the next message
    replaces it (so each artifact takes one line), elsewhere (pipes, CI logs) it is not printed.
    """

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.log_path: Path | None = None
        self._saved: list[int] = []
        self._terminal: TextIO | None = None
        self._status_shown = False

    def __enter__(self) -> "ExportConsole":
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.out_dir.name}.export-", suffix=".log", dir=self.out_dir.parent)
        self.log_path = Path(name)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self._saved = [os.dup(1), os.dup(2)]
        self._terminal = os.fdopen(os.dup(self._saved[1]), "w", buffering=1)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        return self

    def say(self, message: str) -> None:
        term = self._terminal or sys.stderr
        tty = term.isatty()
        if self._status_shown:
            term.write("\r\033[K")
            self._status_shown = False
        if message.endswith(" ..."):
            if tty:
                term.write(message)
                term.flush()
                self._status_shown = True
            return
        term.write(message + "\n")

    def __exit__(self, *exc) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for fd, saved in zip((1, 2), self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        if self._terminal is not None:
            if self._status_shown:
                self._terminal.write("\n")
            self._terminal.close()

    def discard(self) -> None:
        """Remove the log (the export was interrupted; it is one of its temporary files)."""
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def discard_if_empty(self) -> bool:
        """Remove the log if nothing was written to it; True when removed."""
        if self.log_path is not None and self.log_path.exists() and self.log_path.stat().st_size == 0:
            self.discard()
            return True
        return False

    def move_into(self, export_dir: Path) -> Path:
        """After a successful export: move the log to export_dir/export.log; returns its path."""
        final = Path(export_dir) / LOG_NAME
        os.replace(self.log_path, final)
        os.chmod(final, 0o666 & ~_umask())
        self.log_path = final
        return final


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
