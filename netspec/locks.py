"""One process at a time in a folder: an OS file lock (fcntl.flock) held while it is written.

`FolderLock(folder, what).acquire(command)` locks FOLDER/.netspec.lock (made if missing)
or raises `Busy`, naming the process that holds it: the lock file holds that process's
pid and command. The kernel drops a lock when its process ends, however it ends (exit,
crash, SIGKILL), so a leftover lock file never blocks anyone. A run folder is locked
while it is trained, a sweep's folder while the sweep runs. Imports no torch.
"""
from __future__ import annotations

import fcntl
import os
import shlex
from pathlib import Path

from netspec.errors import NetspecError

LOCK_FILE = ".netspec.lock"


class Busy(NetspecError):
    """Another process is writing the folder. Exit 2."""

    def __str__(self) -> str:
        return f"error: {self.args[0]}"


class FolderLock:
    def __init__(self, folder: str | os.PathLike, what: str):
        self.path = Path(folder) / LOCK_FILE
        self.what = what   # "run folder", "sweep folder": how the refusal names it
        self._fd: int | None = None

    def acquire(self, command: list[str]) -> "FolderLock":
        """Lock the folder for this process (it must exist), or raise Busy. `with
        FolderLock(...).acquire(command):` releases it at the end of the block."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            raise Busy(f"{self.what} {self.path.parent} is in use by {holder or 'another process'}; "
                       f"wait for it to end, or use another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({shlex.join(command)})\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)   # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self   # acquired already (acquire returns it)

    def __exit__(self, *exc) -> None:
        self.release()
