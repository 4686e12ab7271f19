"""What the RedPitaya clients of both protocols (MCPHA and SCPI) share: settings, connection."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from mimocorb2.functions.importers._common import connect
from mimocorb2.functions.importers._rp_settings import Settings
from mimocorb2.mimo_buffer import BufferWriter


class RedPitayaClient:
    """One connection to a RedPitaya server; the protocols subclass it.

    A subclass implements :meth:`open` (which starts with :meth:`_connect`) and :meth:`stream`.

    Args:
        settings: The validated configuration.
        stopped: Returns True once the run is being stopped.
        logger: The worker's logger.
    """

    def __init__(
        self, settings: Settings, stopped: Callable[[], bool], logger: logging.Logger
    ) -> None:
        """Stores the settings; does not connect yet."""
        self.s = settings
        self.stopped = stopped
        self.logger = logger
        self.sock: socket.socket | None = None
        self.done = 0
        """Waveforms received so far (including those of earlier connections)."""

    def _connect(self, hint: str) -> socket.socket:
        """Connects to the board (``ip``, ``port``, ``timeout`` of the settings).

        ``hint`` says what to check when the board refuses the connection.

        Raises:
            DeviceError: If the board cannot be reached.
        """
        s = self.s
        self.sock = connect(s.ip, s.port, s.timeout, "RedPitaya", hint)
        return self.sock

    def open(self) -> None:
        """Connects and configures the board.

        Raises:
            DeviceError: If the board cannot be reached.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Closes the connection (idempotent)."""
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def stream(self, writer: BufferWriter, done: int) -> int:
        """Receives waveforms into the writer's slots until the limit or the end of the run.

        Args:
            writer: The sink writer (its commits stamp the metadata).
            done: Waveforms received before (on earlier connections), for ``max_events``.

        Returns:
            The total number of waveforms received.

        Raises:
            DeviceError: On a timeout, a lost connection or a short or malformed waveform.
            StopRequested: When the run is stopped while waiting for data.
            BufferEndedError: When the sink was shut down.
        """
        raise NotImplementedError
