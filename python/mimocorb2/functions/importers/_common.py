"""Helpers shared by the hardware importers: config checks, errors, sockets, ending a worker."""

from __future__ import annotations

import contextlib
import difflib
import math
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import SetupError

POLL_INTERVAL = 0.2
"""Seconds a blocked socket read waits before checking whether the run was stopped."""

_REQUIRED = object()


class DeviceError(Exception):
    """The instrument cannot be reached, stopped answering or sent something unusable."""


class StopRequested(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The sink was shut down from outside (end of the run) while the importer waited."""


# ----- configuration checks -----


def describe(value: Any) -> str:
    """A wrong value for a message: its type and repr."""
    return "nothing (null)" if value is None else f"{type(value).__name__} {value!r}"


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (bools are not)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite real number (bools are not)."""
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
        and math.isfinite(float(value))
    )


class ConfigChecker:
    """Reads configuration values and collects every problem as a message.

    Each check returns the (normalised) value, the default for a missing optional key, or
    None after recording an error. Messages start with ``config key '<key>'``.

    Args:
        config: The worker configuration.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        """Starts with no errors."""
        self.config = config
        self.errors: list[str] = []

    def error(self, key: str, message: str) -> None:
        """Records a problem of ``key`` (empty: of the configuration as a whole)."""
        self.errors.append(f"config key {key!r}: {message}" if key else message)

    def _get(self, key: str, default: Any, example: str) -> Any:
        value = self.config.get(key, _REQUIRED)
        if value is _REQUIRED or (value is None and default is not _REQUIRED):
            if default is _REQUIRED:
                self.error(key, f"missing; add e.g. '{key}: {example}' to the worker's config")
                return _REQUIRED
            return default
        return value

    def integer(
        self,
        key: str,
        default: Any = _REQUIRED,
        lo: int | None = None,
        hi: int | None = None,
        example: str = "1",
    ) -> Any:
        """An integer in ``lo..hi`` (inclusive); null or missing gives ``default``."""
        value = self._get(key, default, example)
        if value is _REQUIRED:
            return None
        if value is default and default is not _REQUIRED:
            return value
        if not is_int(value):
            self.error(key, f"expected a whole number{_range(lo, hi)}, got {describe(value)}")
            return None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.error(key, f"{value} is out of range; allowed{_range(lo, hi)}")
            return None
        return int(value)

    def number(
        self,
        key: str,
        default: Any = _REQUIRED,
        lo: float | None = None,
        hi: float | None = None,
        example: str = "1.0",
        strict_lo: bool = False,
    ) -> Any:
        """A finite real number in ``lo..hi`` (``strict_lo``: greater than ``lo``)."""
        value = self._get(key, default, example)
        if value is _REQUIRED:
            return None
        if value is default and default is not _REQUIRED:
            return value
        rng = _range(lo, hi, strict_lo)
        if not is_number(value):
            self.error(key, f"expected a number{rng}, got {describe(value)}")
            return None
        bad_lo = lo is not None and (value <= lo if strict_lo else value < lo)
        if bad_lo or (hi is not None and value > hi):
            self.error(key, f"{value} is out of range; allowed{rng}")
            return None
        return float(value)

    def boolean(self, key: str, default: Any = _REQUIRED) -> Any:
        """A bool (YAML true or false)."""
        value = self._get(key, default, "false")
        if value is _REQUIRED:
            return None
        if not isinstance(value, bool | np.bool_):
            self.error(key, f"expected true or false, got {describe(value)}")
            return None
        return bool(value)

    def choice(
        self,
        key: str,
        choices: Sequence[Any],
        default: Any = _REQUIRED,
        ignore_case: bool = True,
    ) -> Any:
        """One of ``choices`` (strings compared case-insensitively unless told otherwise)."""
        value = self._get(key, default, str(choices[0]))
        if value is _REQUIRED:
            return None
        for c in choices:
            if isinstance(c, str) and isinstance(value, str):
                if value == c or (ignore_case and value.lower() == c.lower()):
                    return c
            elif is_int(c) and is_int(value) and value == c:
                return c
        allowed = ", ".join(str(c) for c in choices)
        self.error(key, f"{value!r} is not allowed; use one of {allowed}")
        return None

    def string(self, key: str, default: Any = _REQUIRED, example: str = "x") -> Any:
        """A non-empty string."""
        value = self._get(key, default, example)
        if value is _REQUIRED:
            return None
        if not isinstance(value, str) or not value.strip():
            self.error(key, f"expected a non-empty string, got {describe(value)}")
            return None
        return value.strip()

    def typos(self, known: Iterable[str]) -> None:
        """Reports keys that look like misspelt known keys (unknown keys are otherwise allowed).

        Other keys are left alone: a worker configuration may carry keys of ``base_config``
        or of other workers sharing a configuration file.
        """
        known = list(known)
        for key in self.config:
            if not isinstance(key, str) or key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
            if close and close[0] not in self.config:
                self.error(key, f"unknown key (did you mean {close[0]!r}?)")


def _range(lo: float | None, hi: float | None, strict_lo: bool = False) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}" if not strict_lo else f" > {lo} and <= {hi}"
    if lo is not None:
        return f" > {lo}" if strict_lo else f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def dtype_text(dtype: np.dtype | None) -> str:
    """``{IN1: int16, IN2: int16}`` style description of a structured dtype."""
    if dtype is None or dtype.names is None:
        return str(dtype)
    fields = dtype.fields or {}
    return "{" + ", ".join(f"{n}: {fields[n][0].name}" for n in dtype.names) + "}"


def as_dtype(sink_dtype: Any) -> np.dtype | None:
    """The sink dtype as a numpy dtype (a ``{field: type}`` mapping is accepted), or None."""
    if sink_dtype is None:
        return None
    if isinstance(sink_dtype, Mapping):
        return np.dtype([(str(k), np.dtype(v)) for k, v in sink_dtype.items()])
    return np.dtype(sink_dtype)


# ----- ending a worker -----


def config_error(io: BufferIO, function: str, errors: list[str]) -> SetupError:
    """Ends the sinks and returns the SetupError listing configuration problems."""
    io.end_sinks(failed=True)
    lines = "\n  - ".join(errors)
    return SetupError(io.name, f"{function}: invalid configuration:\n  - {lines}")


# ----- sockets -----


def connect(
    host: str, port: int, timeout: float, what: str, hint: str, rcvbuf: int = 4 << 20
) -> socket.socket:
    """Opens a TCP connection with keep-alive probes; the socket polls every POLL_INTERVAL.

    Raises:
        DeviceError: With the reason and what to check.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as e:
        raise DeviceError(
            f"cannot resolve the host name {host!r} of the {what} ({e.strerror}); check 'ip'"
        ) from None
    except ConnectionRefusedError:
        raise DeviceError(
            f"{host}:{port} refused the connection: {hint}, or 'port' is wrong"
        ) from None
    except TimeoutError:
        raise DeviceError(
            f"no answer from {host}:{port} within {timeout:g} s (config key 'timeout'); is the "
            f"{what} switched on, on the network and at that address?"
        ) from None
    except OSError as e:
        raise DeviceError(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        # keep-alive probes notice a board that vanished while no trigger arrives
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        sock.settimeout(POLL_INTERVAL)
    except OSError:
        sock.close()
        raise
    return sock


def send_all(sock: socket.socket, data: bytes, timeout: float, what: str) -> None:
    """Sends ``data`` completely within ``timeout`` seconds.

    Raises:
        DeviceError: If the peer does not take the data in time or the connection is lost.
    """
    sock.settimeout(timeout)
    try:
        sock.sendall(data)
    except TimeoutError:
        raise DeviceError(f"the board did not accept {what} within {timeout:g} s") from None
    except OSError as e:
        raise DeviceError(f"the connection was lost while sending {what}: {e}") from None
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(POLL_INTERVAL)


def recv_exact(
    sock: socket.socket,
    into: memoryview,
    n: int,
    idle_limit: float | None,
    stall_limit: float,
    stopped: Callable[[], bool],
    what: str,
) -> None:
    """Receives exactly ``n`` bytes into ``into[:n]``.

    Waits at most ``idle_limit`` seconds (None: without limit) for the first byte and at
    most ``stall_limit`` seconds without progress after it; checks ``stopped()`` every
    :data:`POLL_INTERVAL` while waiting.

    Raises:
        DeviceError: On a timeout, a closed or broken connection.
        StopRequested: If ``stopped()`` became true while waiting.
    """
    got = 0
    mark_got = 0
    mark_t = time.monotonic()
    recv_into = sock.recv_into
    while got < n:
        try:
            k = recv_into(into[got:] if got else into, n - got)
        except TimeoutError:
            now = time.monotonic()
            if got != mark_got:
                mark_got, mark_t = got, now
            limit = idle_limit if got == 0 else stall_limit
            if limit is not None and now - mark_t >= limit:
                if got == 0:
                    raise DeviceError(
                        f"nothing received for {limit:g} s while waiting for {what}"
                    ) from None
                raise DeviceError(
                    f"the board stopped sending in the middle of {what} ({got} of {n} bytes "
                    f"received, nothing more for {limit:g} s)"
                ) from None
            if stopped():
                raise StopRequested from None
            continue
        except OSError as e:
            raise DeviceError(f"the connection was lost while receiving {what}: {e}") from None
        if k == 0:
            raise DeviceError(
                f"the board closed the connection while sending {what} ({got} of {n} bytes "
                "received)"
                if got
                else f"the board closed the connection (waiting for {what})"
            )
        got += k


def sleep_unless(stopped: Callable[[], bool], seconds: float) -> None:
    """Sleeps ``seconds`` in slices.

    Raises:
        StopRequested: As soon as ``stopped()`` is true.
    """
    end = time.monotonic() + seconds
    while True:
        if stopped():
            raise StopRequested
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, POLL_INTERVAL))
