"""Which sweep folders this account wrote, so that ``--resume`` never unpickles a stranger's state.

Resuming a sweep hands Ray Tune's saved state to ``Tuner.restore``, which unpickles it
(``tuner.pkl``, searcher states): a pickle can run any code. A sweep folder copied from a
colleague, a shared drive or an archive is data that looks harmless and is not. So every sweep
this project starts writes ``provenance.json`` beside its ``study.yaml``: an HMAC-SHA256 of the
study file under a key that only this account holds (``~/.config/spp-sweep/sweep-key``, mode
0600, created on first use; ``$SPP_SWEEP_KEY_FILE`` names another file, e.g. one the nodes of a
cluster share). ``--resume`` checks it before Ray is touched and refuses a folder without a
valid mark unless the user says ``--trust-state``. The mark is bound to the folder's path, so a
folder moved or renamed (or copied over another) is a stranger's too.

The mark covers what Ray unpickles as well: when a phase's Tuner returns (finished, stopped by
Ctrl+C or failed), ``sign_state`` records a digest of each of Ray's state files of that phase
(``tuner.pkl``, experiment and searcher states) under the same key. ``--resume`` restores a
phase with Ray only where every state file there matches its signature; otherwise (a driver
killed before it signed, a file replaced) the state is set aside unread and the phase continues
from the trial files (recovery.abandon). The project's own files inside a sweep are read as
JSON, NumPy without pickles and tensors with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError

KEY_ENV = "SPP_SWEEP_KEY_FILE"
MARK_FILE = "provenance.json"
STATE_MARK = "ray-state-signature.json"  # in each phase folder
_CONTEXT = b"spp-sweep sweep folder v2\n"
_STATE_CONTEXT = b"spp-sweep ray state v1\n"


def key_path() -> Path:
    return Path(os.environ.get(KEY_ENV) or Path.home() / ".config" / "spp-sweep" / "sweep-key").expanduser()


def _key(create: bool) -> bytes | None:
    """This account's key; made (0600) when ``create`` and there is none; None if unusable."""
    path = key_path()
    try:
        key = bytes.fromhex(path.read_text().strip())
        return key if len(key) >= 16 else None
    except FileNotFoundError:
        if not create:
            return None
    except (OSError, ValueError):
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w") as stream:
            stream.write(secrets.token_hex(32))
    except FileExistsError:  # another process made it first
        pass
    except OSError:  # check_key says so before a sweep starts
        return None
    return _key(create=False)


def check_key() -> None:
    """Before a new sweep starts: this account's key exists (made now if missing) and reads, or
    one line saying how to fix it (a sweep signed with no key could never be resumed)."""
    if _key(create=True) is None:
        raise ConfigError(f"the sweep key {key_path()} cannot be read or made (it must hold at least 32 hex digits, "
                          f"and its folder be writable); fix or remove it, or set {KEY_ENV} to a writable file")


def _mac(key: bytes, root: str, study_text: str) -> str:
    return hmac.new(key, _CONTEXT + root.encode() + b"\n" + study_text.encode(), hashlib.sha256).hexdigest()


def mark(root: str, study_text: str, write: Callable[[str, str], None]) -> None:
    """Sign a new sweep folder (``study_text``: its study.yaml as written; ``root``: where it is)."""
    key = _key(create=True)
    if key is not None:
        write(f"{root}/{MARK_FILE}", json.dumps({"version": 2, "study_hmac_sha256": _mac(key, root, study_text)})
              + "\n")


def _state_mac(key: bytes, path: str, digests: dict[str, str]) -> str:
    listing = json.dumps(digests, sort_keys=True).encode()
    return hmac.new(key, _STATE_CONTEXT + path.encode() + b"\n" + listing, hashlib.sha256).hexdigest()


def sign_state(path: str, files: dict[str, bytes], write: Callable[[str, str], None]) -> None:
    """Sign Ray's state ``files`` (name: content) of the phase folder ``path`` as they are now."""
    key = _key(create=True)
    if key is not None:
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        write(f"{path}/{STATE_MARK}", json.dumps({"version": 1, "files": digests,
                                                  "hmac_sha256": _state_mac(key, path, digests)}) + "\n")


def state_signed(path: str, files: dict[str, bytes], read: Callable[[str], str | None]) -> bool:
    """Whether every one of Ray's state ``files`` in ``path`` is as this account signed it."""
    key = _key(create=False)
    try:
        saved = json.loads(read(f"{path}/{STATE_MARK}") or "null")
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if key is None or not isinstance(saved, dict) or not isinstance(saved.get("files"), dict):
        return False
    digests = {str(k): str(v) for k, v in saved["files"].items()}
    if not hmac.compare_digest(str(saved.get("hmac_sha256", "")), _state_mac(key, path, digests)):
        return False
    return all(digests.get(name) == hashlib.sha256(data).hexdigest() for name, data in files.items())


def check(root: str, study_text: str, read: Callable[[str], str | None], trust: bool) -> None:
    """Refuse to resume ``root`` unless this account wrote it (or ``trust``)."""
    if trust:
        return
    key = _key(create=False)
    try:
        saved = json.loads(read(f"{root}/{MARK_FILE}") or "null")
        ok = key is not None and isinstance(saved, dict) and hmac.compare_digest(
            str(saved.get("study_hmac_sha256", "")), _mac(key, root, study_text))
    except (OSError, ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise ConfigError(
            f"--resume: {root} was not started by spp-sweep under this account in this place (no valid "
            f"{MARK_FILE}, its study.yaml was changed, or the folder was moved); resuming unpickles Ray Tune's "
            "saved state (tuner.pkl), which can run code. "
            "Add --trust-state only if you trust where the folder came from; `spp-sweep report` reads it safely")
