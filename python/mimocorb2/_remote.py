"""Remote run control over ZeroMQ: ``mimocorb2 SETUP --serve`` and ``mimocorb2 --connect``.

A served run is one more face of the :class:`~mimocorb2.control.Control`, next to the terminal
and the GUI link: :class:`RemoteServer` receives the worker output, the statistics and the end
of the run from the control's loop (``send_lines``, ``send_stats``, ``send_finished``; none of
them blocks) and puts the commands of its clients into ``Control.commands``, exactly like the
terminal and the GUI. :class:`RemoteClient` is the other end: the terminal (``-c kbd``) or the
Buffer Manager window (``-c gui``) on another host. The client has the interface of the GUI's
:class:`~mimocorb2._gui.link.Endpoint` (``messages``, ``send``, ``command``, ``close``), so the
window runs on it unchanged.

Wire: one ROUTER socket on the serving side, one DEALER socket per client; every message is one
JSON object in one frame (the GUI link's messages, see :mod:`mimocorb2._gui.link`):

- client → server: ``hello`` (protocol version), ``command``, ``ping`` (every second),
  ``bye``;
- server → client: ``setup`` (the answer to ``hello``, then the recent worker output and the
  newest statistics), ``lines``, ``stats``, ``finished``, ``ping`` (when nothing else was sent
  for a second) and ``closed`` (the control has ended).

Security: nothing listens unless ``--serve`` is given. An address without a host binds to
loopback (127.0.0.1). Any other bind needs ZeroMQ CURVE keys (``mimocorb2 keygen DIR``): the
connection is then encrypted, and only clients whose public key is in
``DIR/authorized_clients/`` are let in (ZAP, :class:`zmq.auth.thread.ThreadAuthenticator`).

The parts: :mod:`~mimocorb2._remote_access` (constants, addresses, keys, ``keygen``),
:mod:`~mimocorb2._remote_server` and :mod:`~mimocorb2._remote_client`; their names are
importable from here.
"""

from __future__ import annotations

# The constants and helpers stay importable from here (_remote.PROTOCOL_VERSION, ...).
from mimocorb2._remote_access import (  # noqa: F401
    AUTHORIZED_DIR,
    CLIENT_PUBLIC,
    CLIENT_SECRET,
    CLOSE_LINGER_MS,
    CONNECT_TIMEOUT_S,
    DEFAULT_HOST,
    HISTORY_LINES,
    INSTALL_HINT,
    MAX_PENDING_LINES,
    PING_S,
    PROTOCOL_VERSION,
    SEND_HWM,
    SERVER_PUBLIC,
    SERVER_SECRET,
    SILENCE_S,
    RemoteError,
    check_serve,
    is_loopback,
    keygen,
    keygen_main,
)
from mimocorb2._remote_client import (  # noqa: F401
    RemoteClient,
    connect_main,
    remote_window,
    run_gui,
    run_terminal,
)
from mimocorb2._remote_server import RemoteServer

__all__ = [
    "RemoteClient",
    "RemoteError",
    "RemoteServer",
    "check_serve",
    "connect_main",
    "keygen",
    "keygen_main",
]
