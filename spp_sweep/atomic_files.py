"""Files written whole or not at all, with the permissions the user's umask asks for.

``tempfile`` creates files 0600 and folders 0700 (private, so nobody reads a half-written
file); once complete, they get the mode an ordinary ``open``/``mkdir`` would have given them,
so colleagues on shared storage can read the results. Standard library only: the analysis
package uses it too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError


def umask() -> int:
    """The process's umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(path: Path, folder: bool = False) -> None:
    """Give a finished temporary file (0666) or folder (0777) the mode the umask allows."""
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, then rename it into place."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        publish(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def check_writable_folder(folder: Path, flag: str) -> None:
    """``folder`` can be made or replaced as a folder here: one line before anything is written."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{flag} {folder} is a file; give a folder")
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise ConfigError(f"{flag} {folder}: {existing} is not a folder; give a path under a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {folder}: {existing} is not writable; choose another place")


OUTPUT_MARK = ".spp-sweep-output"  # written into every folder this tool replaces whole (reports)


def check_output_folder(folder: Path, flag: str, keep: tuple[Path, ...] = ()) -> None:
    """Refuse, in one line before any work, an output folder whose replacement would delete what
    this tool did not write: it must be new, empty, or marked (:data:`OUTPUT_MARK`) by an earlier
    output; never the working folder, a folder above it, or one holding a folder of ``keep``
    (the sweep a report reads)."""
    check_writable_folder(folder, flag)
    where = folder.expanduser().resolve()
    for kept in (Path.cwd(), *keep):
        kept = kept.expanduser().resolve()
        if where == kept or where in kept.parents:
            what = "the working folder" if kept == Path.cwd().resolve() else f"the sweep {kept}"
            raise ConfigError(f"{flag} {folder} is or holds {what}, which replacing it would delete; give a new "
                              "folder for the output")
    if folder.is_dir() and not (folder / OUTPUT_MARK).is_file() and any(folder.iterdir()):
        raise ConfigError(f"{flag} {folder} holds files spp-sweep did not write (no {OUTPUT_MARK} in it), which "
                          "replacing it would delete; give a new or empty folder")
