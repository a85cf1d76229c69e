"""Joining Ray: a local instance, or an existing cluster checked before ``ray.init`` hangs.

``ray.init`` on a wrong address or a mismatched authentication mode retries for tens of
seconds and then reports something vague (or connects, and every trial dies unstarted);
the checks here turn each case into a one-line error that names the fix.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from ..errors import ConfigError

AUTH_MODE = "RAY_AUTH_MODE"  # Ray's switch for token authentication (docs.ray.io: ray-security/token-auth)


def connect(address: str | None, quiet: bool = False) -> None:
    """Join the cluster at ``address``, or start Ray on this machine (reuses a running session)."""
    import logging

    import ray

    if ray.is_initialized():
        return
    if address and address != "auto":
        _probe(address)
        _check_token(address)
    elif address == "auto":
        _follow_local_cluster_mode()
    try:
        level = logging.WARNING if quiet else logging.INFO
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=level)
        else:  # a new instance, never a stale one
            ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=level)
    except ConnectionError as error:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r} ({error}); start it with `ray start --head` "
                          "or check --address") from None


def connected() -> bool:
    """Whether this process already holds a Ray session (a caller's, which it must not end)."""
    import ray

    return bool(ray.is_initialized())


def disconnect() -> None:
    """End this process's Ray session now rather than at the interpreter's exit, where its
    seconds (stopping the local instance's processes: about 2-4 s) would fall outside every
    clock a command keeps."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds on an address nobody listens at (Ray itself retries for minutes)."""
    import socket

    host_port = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({error.strerror or error}); start it with "
                          "`ray start --head` or check --address") from None


def _check_token(address: str, timeout: float = 5.0) -> None:
    """Fail in milliseconds where the cluster wants a token this driver does not send.

    Ray (2.59 and later) turns token authentication on for ``ray start --head`` whenever
    ``~/.ray/auth_token`` exists, but a driver given an explicit address never turns it on by
    itself (it would send the token to whatever host it was pointed at); ``ray.init`` then
    retries for ~20 s and reports an unreachable cluster.  A one-off GCS call tells the two
    cases apart.  Ray Client addresses (``ray://``) authenticate elsewhere and are skipped.
    """
    if address.startswith("ray://"):
        return
    try:
        from ray.exceptions import AuthenticationError
    except ImportError:  # Ray before token authentication
        return
    token_mode = os.environ.get(AUTH_MODE, "").lower() == "token"
    try:
        _gcs_call(address, timeout)
    except AuthenticationError:
        if token_mode:
            raise ConfigError(f"the Ray cluster at {address} rejected this machine's authentication token; set "
                              "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token "
                              "(`ray get-auth-token` on the head node prints it)") from None
        raise ConfigError(f"the Ray cluster at {address} requires token authentication; run with "
                          "RAY_AUTH_MODE=token, and RAY_AUTH_TOKEN set to the cluster's token unless "
                          "~/.ray/auth_token holds it (`ray get-auth-token` on the head node prints it)") from None
    except Exception:  # noqa: BLE001 - anything else (old Ray, timeouts) is left to ray.init to report
        return
    if token_mode and _answers_in_mode(address, "disabled", timeout):
        raise ConfigError(f"the Ray cluster at {address} does not use token authentication but RAY_AUTH_MODE=token "
                          "is set here (its trials would die unstarted); unset RAY_AUTH_MODE, or restart the "
                          "cluster with RAY_AUTH_MODE=token on every node")


def _gcs_call(address: str, timeout: float) -> None:
    """One cheap GCS request in this process's authentication mode (raises what Ray raises)."""
    from ray._raylet import GcsClient  # type: ignore[attr-defined]  # private API: where it moves, _check_token gives up quietly

    with _native_stderr_silenced():  # Ray's C++ client logs each refusal; our error says it once
        GcsClient(address=address.split("://", 1)[-1]).internal_kv_get(b"spp-sweep-probe", None, timeout=timeout)


def _answers_in_mode(address: str, mode: str, timeout: float) -> bool:
    """Whether the cluster serves a driver in authentication ``mode`` ("disabled": no token sent).

    Ray reads the mode from the environment into a process-wide config; this sets it for one
    request and puts it back, the way Ray's own ``_enable_token_auth`` switches it on.
    """
    chosen = os.environ.get(AUTH_MODE)
    try:
        from ray._raylet import Config  # type: ignore[attr-defined]  # private, as GcsClient

        os.environ[AUTH_MODE] = mode
        Config.initialize("")
        _gcs_call(address, timeout)
        return True
    except Exception:  # noqa: BLE001 - refused (or unknown): the caller keeps the mode it had
        return False
    finally:
        if chosen is None:
            os.environ.pop(AUTH_MODE, None)
        else:
            os.environ[AUTH_MODE] = chosen
        with contextlib.suppress(Exception):
            from ray._raylet import Config  # type: ignore[attr-defined]  # private, as GcsClient

            Config.initialize("")


def _follow_local_cluster_mode(timeout: float = 5.0) -> None:
    """``--address auto``: run in the found cluster's authentication mode.

    For an auto-detected cluster Ray turns token mode on whenever a token file exists, even
    where that cluster runs without authentication; every trial then dies unstarted.  An
    explicit RAY_AUTH_MODE is the user's choice and is left alone.
    """
    if AUTH_MODE in os.environ:
        return
    try:
        from ray._private.services import canonicalize_bootstrap_address  # private: gone means Ray decides

        found = canonicalize_bootstrap_address("auto")
    except Exception:  # noqa: BLE001 - no cluster found: ray.init says so
        return
    if found and _answers_in_mode(found, "disabled", timeout):
        os.environ[AUTH_MODE] = "disabled"


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a moment (C++ logging bypasses sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
