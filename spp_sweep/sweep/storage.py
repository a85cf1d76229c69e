"""Where a sweep's files live: a folder of this machine's file system (every node sees it: one
machine, or a shared file system) or an object store (``s3://``, ``gs://``, read and written
through pyarrow's file systems).

The one module that tells the two apart: the rest of the sweep reads and writes through
:func:`read_text`, :func:`write_text` and :func:`state_files`, and asks :func:`local_folder` for
what only a file system offers (mending a file a full disk cut, a lock, phase times, a report
beside the results), which an object store skips.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError

URI_SCHEME = "://"


class LocalFiles:
    """A folder of this machine's file system."""

    def folder(self, path: str) -> Path | None:
        return Path(path)

    def absolute(self, path: str) -> str:
        """``path`` made absolute (the workers need one path, whatever their working folder)."""
        try:
            return str(Path(path).expanduser().resolve())
        except (RuntimeError, OSError) as error:  # a loop of symbolic links (RuntimeError before Python 3.13)
            raise ConfigError(f"--storage {path} cannot be resolved ({error}); give a folder path without a "
                              "loop of links") from None

    def read_text(self, path: str) -> str | None:
        return Path(path).read_text() if Path(path).exists() else None

    def write_text(self, path: str, text: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)

    def files(self, folder: str, names: re.Pattern[str]) -> dict[str, bytes]:
        found = Path(folder)
        return {f.name: f.read_bytes() for f in sorted(found.glob("*")) if f.is_file() and names.match(f.name)} \
            if found.is_dir() else {}


class ObjectStore:
    """An object store's URI, through pyarrow (installed with Ray Tune)."""

    def folder(self, path: str) -> Path | None:
        return None

    def absolute(self, path: str) -> str:
        return path

    def read_text(self, path: str) -> str | None:
        import pyarrow.fs

        filesystem, inner = pyarrow.fs.FileSystem.from_uri(path)
        if filesystem.get_file_info(inner).type == pyarrow.fs.FileType.NotFound:
            return None
        with filesystem.open_input_stream(inner) as stream:
            return stream.read().decode()

    def write_text(self, path: str, text: str) -> None:
        import pyarrow.fs

        filesystem, inner = pyarrow.fs.FileSystem.from_uri(path)
        filesystem.create_dir(inner.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(inner) as stream:
            stream.write(text.encode())

    def files(self, folder: str, names: re.Pattern[str]) -> dict[str, bytes]:
        import pyarrow.fs

        filesystem, inner = pyarrow.fs.FileSystem.from_uri(folder)
        found = {}
        for info in filesystem.get_file_info(pyarrow.fs.FileSelector(inner, allow_not_found=True)):
            if info.type == pyarrow.fs.FileType.File and names.match(info.base_name):
                with filesystem.open_input_stream(info.path) as stream:
                    found[info.base_name] = stream.read()
        return found


def storage_of(path: str) -> LocalFiles | ObjectStore:
    """The storage ``path`` lies on: an object store for a URI, else this machine's file system."""
    return ObjectStore() if URI_SCHEME in path else LocalFiles()


def local_folder(path: str) -> Path | None:
    """``path`` as a folder of this file system, or None on an object store."""
    return storage_of(path).folder(path)


def read_text(path: str) -> str | None:
    """The file's text, or None where there is no such file."""
    return storage_of(path).read_text(path)


def write_text(path: str, text: str) -> None:
    """Write the file (its folders made as needed)."""
    storage_of(path).write_text(path, text)


def state_files(folder: str, names: re.Pattern[str]) -> dict[str, bytes]:
    """The files directly in ``folder`` whose names match ``names``, by name."""
    return storage_of(folder).files(folder, names)
