"""The connecting side of remote run control (``mimocorb2 --connect``).

:class:`RemoteClient`, and the terminal and the Buffer Manager window for a served run.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mimocorb2._control_types import Command, ExitCommand, command_to_wire
from mimocorb2._face_messages import decode, drain, encode, valid_command
from mimocorb2._remote_access import (
    AUTHORIZED_DIR,
    CLIENT_SECRET,
    CONNECT_TIMEOUT_S,
    PING_S,
    PROTOCOL_VERSION,
    SERVER_PUBLIC,
    SILENCE_S,
    RemoteError,
    import_zmq,
    load_key,
    split_address,
    zmq_endpoint,
)

# ----- the connecting side -----


def _connect_timeout() -> float:
    try:
        return max(0.5, float(os.environ.get("MIMOCORB2_CONNECT_TIMEOUT", CONNECT_TIMEOUT_S)))
    except ValueError:
        return CONNECT_TIMEOUT_S


class RemoteClient:
    """A connection to a served run; the GUI window's endpoint interface.

    Args:
        address: ``tcp://HOST:PORT`` of the served run.
        keys: Directory with the server's public key (``server.key``) and this client's key
            pair (``client.key_secret``); required when the run is served with keys.
        timeout: Seconds :meth:`connect` waits for the run's answer (default
            ``MIMOCORB2_CONNECT_TIMEOUT`` or 10).

    Raises:
        RemoteError: Bad address or missing key files.
    """

    def __init__(
        self, address: str, keys: str | Path | None = None, timeout: float | None = None
    ) -> None:
        """Prepares the socket; :meth:`connect` connects."""
        zmq = import_zmq()
        self._zmq = zmq
        host, port = split_address(address, serving=False)
        self.address = zmq_endpoint(host, port, bind=False)
        self.timeout = _connect_timeout() if timeout is None else float(timeout)
        self.keys = None if keys is None else Path(keys)
        curve: dict[str, bytes] = {}
        if self.keys is not None:
            server_public, _ = load_key(self.keys / SERVER_PUBLIC, self.keys, secret=False)
            public, secret = load_key(self.keys / CLIENT_SECRET, self.keys, secret=True)
            assert secret is not None
            curve = {"server": server_public, "public": public, "secret": secret}
        self._ctx = zmq.Context()
        self._socket = self._ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if "[" in self.address:
            self._socket.setsockopt(zmq.IPV6, 1)
        if curve:
            self._socket.curve_serverkey = curve["server"]
            self._socket.curve_publickey = curve["public"]
            self._socket.curve_secretkey = curve["secret"]
        self._incoming: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._outgoing: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.setup: dict[str, Any] | None = None
        self.closed = False

    def connect(self) -> dict[str, Any]:
        """Says hello and waits for the run's setup message; then starts the I/O thread.

        Returns:
            The setup message (buffers, roots, workers, run directory).

        Raises:
            RemoteError: No answer within ``timeout`` (no run served there, or keys that do
                not match), the run refused this client, or a protocol mismatch.
        """
        zmq = self._zmq
        from zmq.utils.monitor import recv_monitor_message

        events = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        monitor = self._socket.get_monitor_socket(events)
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        deadline = time.monotonic() + self.timeout
        problem: str | None = None
        try:
            self._socket.connect(self.address)
            self._socket.send(encode({"type": "hello", "version": PROTOCOL_VERSION}))
            while self.setup is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RemoteError(self._no_answer())
                ready = dict(poller.poll(min(left, 0.1) * 1000))
                if monitor in ready:
                    event = recv_monitor_message(monitor)
                    if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                        problem = (
                            f"the run on {self.address} refused this client's key "
                            f"({self.keys}/{CLIENT_SECRET}): its public key is not in the "
                            f"server's {AUTHORIZED_DIR}/"
                        )
                    else:
                        problem = (
                            f"the handshake with {self.address} failed: one side uses CURVE "
                            "keys and the other does not, or they do not match (--keys)"
                        )
                    raise RemoteError(problem)
                if self._socket in ready:
                    message = decode(self._socket.recv()) or {}
                    if message.get("type") == "refused":
                        raise RemoteError(f"the run on {self.address} refused: {message['reason']}")
                    if message.get("type") == "setup":
                        self.setup = message
        except BaseException:
            self._socket.disable_monitor()
            monitor.close(linger=0)
            self.close()
            raise
        self._socket.disable_monitor()
        monitor.close(linger=0)
        self._thread = threading.Thread(target=self._io, name="remote-client", daemon=True)
        self._thread.start()
        return self.setup

    def _no_answer(self) -> str:
        keys = (
            f"the keys in {self.keys} do not match the served run's"
            if self.keys is not None
            else "the run is served with keys (add --keys DIR with server.key and "
            "client.key_secret)"
        )
        return (
            f"no answer from {self.address} within {self.timeout:.0f} s: no run is served "
            f"there (mimocorb2 SETUP --serve ...), a firewall is in the way, or {keys}"
        )

    def _io(self) -> None:
        zmq = self._zmq
        heard = sent = time.monotonic()
        reason = None
        while not self._stop.is_set():
            if self._socket.poll(50, zmq.POLLIN):
                heard = time.monotonic()
                while True:
                    try:
                        message = decode(self._socket.recv(zmq.NOBLOCK)) or {}
                    except zmq.Again:
                        break
                    kind = message.get("type")
                    if kind == "closed":
                        reason = f"the run on {self.address} has ended"
                        break
                    if kind in ("setup", "lines", "stats", "finished"):
                        self._incoming.put(message)
                if reason is not None:
                    break
            while True:
                try:
                    out = self._outgoing.get_nowait()
                except queue.Empty:
                    break
                with contextlib.suppress(zmq.ZMQError):
                    self._socket.send(encode(out), zmq.NOBLOCK)
                    sent = time.monotonic()
            now = time.monotonic()
            if now - sent >= PING_S:
                with contextlib.suppress(zmq.ZMQError):
                    self._socket.send(encode({"type": "ping"}), zmq.NOBLOCK)
                sent = now
            if now - heard > SILENCE_S:
                reason = (
                    f"lost the connection to {self.address} (nothing heard for {SILENCE_S:.0f} s)"
                )
                break
        if reason is not None:
            self._incoming.put({"type": "eof", "reason": reason})
        else:
            with contextlib.suppress(zmq.ZMQError):
                self._socket.send(encode({"type": "bye"}), zmq.NOBLOCK)

    # ----- the GUI endpoint's interface -----

    def messages(self) -> list[dict[str, Any]]:
        """Every message of the run received since the last call (``eof`` when it has gone)."""
        return drain(self._incoming)

    def send(self, message: dict[str, Any]) -> None:
        """Forwards a command message; the window's ``ready`` and ``keep_open`` stay here."""
        if message.get("type") == "command":
            self.command(message.get("command"))

    def command(self, command: Any) -> None:
        """Sends a command for the run's ``Control.commands``; ``None`` (exit) only leaves."""
        if command is None or self.closed:
            return
        if not valid_command(command):
            raise ValueError(f"not a command of the control: {command!r}")
        self._outgoing.put({"type": "command", "command": list(command)})

    def close(self) -> None:
        """Says goodbye (when still connected) and closes the connection; the run goes on."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        with contextlib.suppress(Exception):
            self._socket.close(linger=200)
        with contextlib.suppress(Exception):
            self._ctx.term()


def run_terminal(client: RemoteClient, setup: dict[str, Any]) -> int:
    """The terminal (``kbd``) for a served run, until it ends or the user leaves.

    Returns:
        The run's exit code when it finished, 0 when the user left, 1 when the connection
        was lost.
    """
    from mimocorb2._terminal import Terminal

    detached = threading.Event()

    def put(command: Command) -> None:  # a typed command: to the run, or (exit) leave
        if isinstance(command, ExitCommand):
            detached.set()
        else:
            client.command(command_to_wire(command))

    terminal = Terminal(put, interactive=True, exit_any_time=True)
    print(
        f"mimocorb2: connected to the run in {setup.get('run_dir')} on {client.address}; "
        "'exit' or Ctrl-C leaves it running",
        flush=True,
    )
    terminal.start(setup)  # type: ignore[arg-type]  # the setup message holds the RunInfo
    finished: dict[str, Any] | None = None
    gone: str | None = None
    stats: dict[str, Any] = {"buffers": {}, "workers": {}, "time_active": 0.0}
    last_status = 0.0
    try:
        while not detached.is_set() and finished is None and gone is None:
            for message in client.messages():
                kind = message["type"]
                if kind == "lines":
                    terminal.lines(message["lines"], int(message.get("dropped") or 0))
                elif kind == "stats":
                    stats = message["stats"]
                    if time.monotonic() - last_status >= terminal.stats_interval:
                        last_status = time.monotonic()
                        terminal.stats(stats, message.get("failures", []))  # type: ignore[arg-type]
                elif kind == "finished":
                    finished = message
                elif kind == "eof":
                    gone = str(message.get("reason"))
            sys.stdout.flush()
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        terminal.stop()
        client.close()
    if finished is not None:
        code = int(finished.get("exit_code") or 0)
        terminal.finished(stats, [], code)  # type: ignore[arg-type]
        print(f"mimocorb2: the run on {client.address} finished (exit code {code})", flush=True)
        return code
    if gone is not None:
        print(f"mimocorb2: {gone}", file=sys.stderr)
        return 1
    print(f"mimocorb2: left the run on {client.address}; it goes on", flush=True)
    return 0


def remote_window(client: RemoteClient, setup: dict[str, Any]) -> Any:
    """The Buffer Manager window on ``client``; closing it leaves the run running.

    Exit (or closing the window) asks nothing and sends no command: a viewer leaves, the
    run goes on. Kill Workers still asks first. A ``QApplication`` must exist.
    """
    from mimocorb2._gui.window import BufferManagerWindow  # imports the Qt binding

    class RemoteWindow(BufferManagerWindow):  # type: ignore[misc, valid-type]
        """The window for a run on another host."""

        def __init__(self, endpoint: Any, info: dict[str, Any]) -> None:
            super().__init__(endpoint, info)
            self._close_ok = True  # closeEvent: no "kill them and exit?" for a viewer

    info = {**setup, "title": f"{setup.get('title', 'mimocorb2')} on {client.address}"}
    return RemoteWindow(client, info)


def run_gui(client: RemoteClient, setup: dict[str, Any]) -> int:
    """The Buffer Manager window for a served run, in this process; returns on its close.

    Returns:
        The run's exit code when the window saw it finish, else 0.
    """
    from mimocorb2._gui import window as qt_window  # imports the Qt binding

    widgets = qt_window.QtWidgets
    app = widgets.QApplication.instance() or widgets.QApplication(sys.argv[:1])
    app.setApplicationName("mimocorb2")
    window = remote_window(client, setup)
    window.show()
    run = getattr(app, "exec", None) or app.exec_
    run()
    client.close()
    return int(window.exit_code or 0) if window.finished else 0


def connect_main(address: str, mode: str | None, keys: str | None) -> int:
    """``mimocorb2 --connect ADDRESS [-c gui|kbd] [--keys DIR]``; returns the exit code."""
    if mode is None:
        from mimocorb2._gui import unavailable_reason

        mode = "gui" if unavailable_reason(need_real_display=True) is None else "kbd"
    chosen = {m.strip().lower() for m in mode.split("+") if m.strip()}
    chosen.discard("stats")  # stats.csv is written on the serving host
    if len(chosen) != 1 or not chosen <= {"gui", "kbd"}:
        print(f"mimocorb2: --connect with -c {mode!r}: use 'gui' or 'kbd'", file=sys.stderr)
        return 2
    if chosen == {"gui"}:
        from mimocorb2._gui import unavailable_reason

        reason = unavailable_reason()
        if reason is not None:
            print(f"mimocorb2: {reason}; using the terminal instead", file=sys.stderr)
            chosen = {"kbd"}
    try:
        client = RemoteClient(address, keys)
        setup = client.connect()
    except RemoteError as e:
        print(f"mimocorb2: {e}", file=sys.stderr)
        return 2
    if chosen == {"gui"}:
        return run_gui(client, setup)
    return run_terminal(client, setup)
