"""One writer per sweep folder: a lock taken before anything of the sweep is written.

Two drivers on one folder (the same ``--storage``/``--name`` typed twice, two ``--resume`` a
moment apart) would both train every trial into the same trial folders. On local or shared-file
storage the lock is ``flock`` on ``STORAGE/NAME/.lock`` (the kernel drops it when its process
ends, so a crashed driver never blocks the next one; its identity left in the file is reported
as taken over). On object storage (``s3://``, ``gs://``) it is a lease object ``lock.json`` with
the driver's host and process; a lease of a process gone on this host is taken over, any other
is refused with the holder named (object stores offer no atomic create through pyarrow, so two
drivers started within the same second there can still both pass).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomic_files import check_writable_folder
from ..errors import ConfigError
from .storage import local_folder

LOCK_FILE = ".lock"
LEASE_FILE = "lock.json"


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _who(holder: Any) -> str:
    if not isinstance(holder, dict):
        return "another spp-sweep process"
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another account's process
        return True
    return True


def _read_holder(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


@contextlib.contextmanager
def sweep_lock(root: str) -> Iterator[None]:
    """Hold ``root``'s lock for the block (one line naming the holder where another has it).
    A folder this call made and the block left empty (a study refused) is removed again."""
    folder = local_folder(root)
    if folder is None:
        with _lease(root):
            yield
        return
    check_writable_folder(folder, "--storage")
    made = next((p for p in reversed([folder, *folder.parents]) if not p.exists()), None)
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(os.pread(handle, 4096, 0).decode(errors="replace"))
            raise ConfigError(f"the sweep {root} is being written by {_who(holder)}; wait for it to end (or stop "
                              "it), then --resume; one sweep folder has one writer") from None
        earlier = _read_holder(os.pread(handle, 4096, 0).decode(errors="replace"))
        if earlier is not None:
            print(f"spp-sweep: taking over the lock of {root} from {_who(earlier)}, which ended without "
                  "releasing it", file=sys.stderr)
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(_me()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(handle, 0)  # released in order: the next driver has nothing to take over
    finally:
        os.close(handle)  # drops the lock
        if made is not None and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
            shutil.rmtree(made, ignore_errors=True)


def running(root: Path) -> bool:
    """Whether a driver holds ``root``'s lock now (``status``: running, not interrupted); for a
    copy of a sweep on object storage, whether its lease is there (released leases are deleted)."""
    if (root / LEASE_FILE).is_file():
        return True
    try:
        handle = os.open(root / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False


@contextlib.contextmanager
def _lease(root: str) -> Iterator[None]:
    import pyarrow.fs

    try:
        filesystem, inner = pyarrow.fs.FileSystem.from_uri(f"{root}/{LEASE_FILE}")
        found = filesystem.get_file_info(inner).type != pyarrow.fs.FileType.NotFound
        holder = None
        if found:
            with filesystem.open_input_stream(inner) as stream:
                holder = _read_holder(stream.read(4096).decode(errors="replace"))
        me = _me()
        if found and isinstance(holder, dict) and (holder.get("host") != me["host"] or _alive(holder.get("pid"))):
            raise ConfigError(f"the sweep {root} is being written by {_who(holder)} (its lease {root}/{LEASE_FILE}); "
                              f"wait for it to end, or delete that lease if you know that driver has ended")
        if found:
            print(f"spp-sweep: taking over the lease of {root} from {_who(holder)}, which ended without "
                  "releasing it", file=sys.stderr)
        filesystem.create_dir(inner.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(inner) as stream:
            stream.write(json.dumps(me).encode())
    except (OSError, pyarrow.lib.ArrowException) as error:
        raise ConfigError(f"--storage {root} cannot be written ({' '.join(str(error).split())[:200]}); check the "
                          "URI and the storage credentials") from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError, pyarrow.lib.ArrowException):
            filesystem.delete_file(inner)
