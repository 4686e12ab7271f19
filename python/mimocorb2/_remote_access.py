"""Remote run control: its constants, addresses, loopback, CURVE keys and ``mimocorb2 keygen``."""

from __future__ import annotations

import argparse
import ipaddress
import re
import shutil
import sys
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 1
DEFAULT_HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 10.0
"""Seconds a client waits for the served run's answer (``MIMOCORB2_CONNECT_TIMEOUT``)."""
SILENCE_S = 10.0
"""Seconds without a message after which either side considers the other gone."""
PING_S = 1.0
"""Seconds between two signs of life when nothing else is sent."""
HISTORY_LINES = 2_000
"""Recent worker output lines a newly connected client receives."""
MAX_PENDING_LINES = 20_000
SEND_HWM = 1_000
"""Messages queued per client; a client that lags further loses lines (counted)."""
CLOSE_LINGER_MS = 1_000

SERVER_PUBLIC = "server.key"
SERVER_SECRET = "server.key_secret"
CLIENT_PUBLIC = "client.key"
CLIENT_SECRET = "client.key_secret"
AUTHORIZED_DIR = "authorized_clients"

INSTALL_HINT = 'pip install "mimocorb2[network]"'
_ADDRESS = re.compile(r"^(?:tcp://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]*):(?P<port>[0-9]+)$")


class RemoteError(Exception):
    """Remote run control cannot work: bad address, missing keys, no answer, refused."""


def import_zmq() -> Any:
    """The ``zmq`` module, or a :class:`RemoteError` naming the pip command."""
    try:
        import zmq
    except ImportError as e:
        raise RemoteError(
            f"remote run control needs the Python package 'pyzmq' ({e}); {INSTALL_HINT}"
        ) from None
    return zmq


# ----- addresses and keys -----


def split_address(address: str, serving: bool) -> tuple[str, int]:
    """``(host, port)`` of ``tcp://HOST:PORT`` (``PORT`` and ``:PORT`` too when serving)."""
    text = address.strip()
    if serving and text.isdigit():
        text = ":" + text
    m = _ADDRESS.match(text)
    form = "tcp://HOST:PORT (or PORT alone for loopback)" if serving else "tcp://HOST:PORT"
    if m is None:
        raise RemoteError(f"{address!r} is not an address of the form {form}")
    port = int(m["port"])
    if not 1 <= port <= 65535:
        raise RemoteError(f"port {port} of {address!r} is out of range; use 1 to 65535")
    host = m["host"]
    if not host:
        if not serving:
            raise RemoteError(f"{address!r}: name the host of the served run, {form}")
        host = DEFAULT_HOST
    if host == "*" and not serving:
        raise RemoteError(f"{address!r}: '*' is for --serve; --connect names the host")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    bare = host.strip("[]")
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False  # an interface or host name: may be reachable from elsewhere


def zmq_endpoint(host: str, port: int, bind: bool) -> str:
    if bind and host.lower() == "localhost":  # ZeroMQ binds interfaces and IPs, not names
        host = DEFAULT_HOST
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def _keygen_hint(keys: Path | str) -> str:
    return f"run 'mimocorb2 keygen {keys}' to write a key pair for the server and a client"


def load_key(path: Path, keys: Path | str, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not path.is_file():
        raise RemoteError(f"the CURVE key file {path} is missing; {_keygen_hint(keys)}")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise RemoteError(f"the CURVE key file {path} cannot be read: {e}") from None
    if secret and not secret_key:
        raise RemoteError(f"{path} holds no secret key; {_keygen_hint(keys)}")
    return public, secret_key


def check_serve(address: str, keys: str | Path | None, probe: bool = False) -> tuple[str, bool]:
    """Checks ``--serve ADDRESS [--keys DIR]`` before anything starts.

    Args:
        address: ``tcp://HOST:PORT``, ``tcp://:PORT`` or ``PORT`` (loopback).
        keys: Directory of :func:`keygen`, or None.
        probe: Also bind the address once (and let it go), so that an address in use is
            reported before the run directory and the buffers are created.

    Returns:
        The ZeroMQ endpoint to bind and whether it is loopback only.

    Raises:
        RemoteError: Bad address; a non-loopback address without keys; missing key files;
            (with ``probe``) the address cannot be bound.
    """
    zmq = import_zmq()
    host, port = split_address(address, serving=True)
    loopback = is_loopback(host)
    if not loopback and keys is None:
        raise RemoteError(
            f"--serve {address} listens beyond this host, which needs authentication and "
            "encryption (ZeroMQ CURVE keys): run 'mimocorb2 keygen KEYDIR' once and add "
            "'--keys KEYDIR'; the connecting host needs KEYDIR/server.key and "
            f"KEYDIR/client.key_secret (or serve on loopback: --serve {port})"
        )
    if keys is not None:
        server_keys(Path(keys))
    endpoint = zmq_endpoint(host, port, bind=True)
    if probe:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            if endpoint.startswith("tcp://["):
                sock.setsockopt(zmq.IPV6, 1)
            sock.bind(endpoint)
        except zmq.ZMQError as e:
            raise RemoteError(f"cannot serve on {endpoint}: {e}") from None
        finally:
            sock.close(linger=0)
            ctx.term()
    return endpoint, loopback


def server_keys(keys: Path) -> tuple[bytes, bytes, Path]:
    public, secret = load_key(keys / SERVER_SECRET, keys, secret=True)
    authorized = keys / AUTHORIZED_DIR
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise RemoteError(
            f"no client keys in {authorized}: no client could connect; {_keygen_hint(keys)} "
            f"(or copy a client's public '.key' file there)"
        )
    assert secret is not None
    return public, secret, authorized


def keygen(directory: str | Path) -> list[Path]:
    """Writes a CURVE key pair for the server and one for a client into ``directory``.

    Files: ``server.key_secret`` (stays on the serving host), ``server.key`` (its public key,
    for the clients), ``client.key_secret`` (for the connecting host), ``client.key`` and
    ``authorized_clients/client.key`` (the public keys the server accepts).

    Returns:
        The files written.

    Raises:
        RemoteError: When keys exist already there (never overwritten).
    """
    import_zmq()
    import zmq.auth

    if not zmq.has("curve"):
        raise RemoteError("this libzmq has no CURVE support; reinstall pyzmq from its wheels")
    target = Path(directory).expanduser()
    names = (SERVER_PUBLIC, SERVER_SECRET, CLIENT_PUBLIC, CLIENT_SECRET)
    existing = [target / n for n in names if (target / n).exists()]
    if existing:
        raise RemoteError(
            f"{', '.join(map(str, existing))} exist already; keys are never overwritten "
            "(remove them first, or choose another directory)"
        )
    target.mkdir(parents=True, exist_ok=True)
    authorized = target / AUTHORIZED_DIR
    authorized.mkdir(exist_ok=True)
    for d in (target, authorized):
        d.chmod(0o700)
    written: list[Path] = []
    for name in ("server", "client"):
        public, secret = zmq.auth.create_certificates(target, name)
        Path(secret).chmod(0o600)
        written += [Path(public), Path(secret)]
    copy = authorized / CLIENT_PUBLIC
    shutil.copyfile(target / CLIENT_PUBLIC, copy)
    written.append(copy)
    return written


def keygen_main(argv: list[str]) -> int:
    """``mimocorb2 keygen DIR``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="mimocorb2 keygen",
        description="Write ZeroMQ CURVE key pairs for 'mimocorb2 SETUP --serve' and "
        "'mimocorb2 --connect' (a server pair and a client pair).",
    )
    parser.add_argument("directory", help="where to write the keys (created if needed)")
    args = parser.parse_args(argv)
    try:
        keygen(args.directory)
    except (RemoteError, OSError) as e:
        print(f"mimocorb2: {e}", file=sys.stderr)
        return 2
    d = Path(args.directory)
    print(
        f"mimocorb2: keys written to {d}\n"
        f"  serving host:    mimocorb2 SETUP --serve tcp://HOST:PORT --keys {d}\n"
        f"                   (uses {SERVER_SECRET} and accepts the keys in {AUTHORIZED_DIR}/)\n"
        f"  connecting host: copy {SERVER_PUBLIC} and {CLIENT_SECRET} into a directory KEYS "
        "there,\n"
        "                   mimocorb2 --connect tcp://HOST:PORT --keys KEYS\n"
        f"  keep the '.key_secret' files private; more clients: their '{CLIENT_PUBLIC}' files "
        f"(renamed) into {AUTHORIZED_DIR}/"
    )
    return 0
