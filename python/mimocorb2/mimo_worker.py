"""The worker side of mimocorb2: configurations, the :class:`BufferIO` and running a worker.

Every worker function receives one :class:`BufferIO`. It bundles the worker's buffer endpoints
(readers of its sources, writers of its sinks, observers of its observed buffers), its
configuration, its directories and its logger:

>>> def worker(io: BufferIO) -> None:
...     threshold = io["threshold"]           # configuration value (KeyError if missing)
...     with io.read[0] as (metadata, data):  # one event of the first source
...         ...
...     io.shutdown_sinks()                   # this process is done writing

A :class:`BufferIO` is built inside the worker process (:meth:`BufferIO.from_setup`), because
writers register with their buffer per process. :func:`run_worker` runs a worker function and
makes sure its sinks are shut down however the function ends, so that the pipeline drains
even after a crash.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2._config import load_config
from mimocorb2.mimo_buffer import BufferObserver, BufferReader, BufferWriter, mimoBuffer

__all__ = ["BufferIO", "Config", "run_worker"]

_MISSING = object()


class Config(dict):
    """Configuration of a worker: a ``dict`` of its configuration keys."""

    @classmethod
    def from_setup(
        cls,
        setup: Any,
        setup_dir: str | Path,
        base_config: Any = None,
        where: str = "config",
    ) -> Config:
        """Builds a worker configuration from its setup value.

        The worker's keys are merged shallowly over ``base_config``: a top-level key of the
        worker configuration replaces the same key of the base configuration.

        Args:
            setup: The worker's ``config`` value: a mapping, a YAML file path, a list of both
                (merged in order) or None.
            setup_dir: Directory relative file paths are resolved against (the setup file's).
            base_config: The setup's ``base_config``: a mapping, or a value accepted like
                ``setup`` (file path or list), or None.
            where: Where the value came from, for error messages.

        Returns:
            The merged configuration.

        Raises:
            ConfigError: For a missing or malformed configuration file or value.
        """
        if base_config is None or isinstance(base_config, Mapping):
            config = cls(base_config or {})
        else:  # a base_config that was not loaded yet (file path or list)
            config = cls(load_config(base_config, setup_dir, "base_config"))
        config.update(load_config(setup, setup_dir, where))
        return config


def _names(value: Any, worker: str, key: str) -> list[str]:
    """The buffer names of a ``sources``/``sinks``/``observes`` setup entry."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    raise TypeError(
        f"worker '{worker}': '{key}' must be a list of buffer names, got {type(value).__name__}"
    )


def _endpoints(worker: str, key: str, entries: Any, kind: type) -> list[Any]:
    """Checks a ``sources``/``sinks``/``observes`` argument of :class:`BufferIO`.

    Args:
        worker: Name of the worker (for messages).
        key: The argument's name.
        entries: The argument: a sequence of ``kind`` endpoints or :class:`mimoBuffer` objects.
        kind: The endpoint class the argument holds (BufferReader, BufferWriter or
            BufferObserver).

    Returns:
        The entries as a list.

    Raises:
        TypeError: If ``entries`` is not a sequence or holds something else.
    """
    if isinstance(entries, str | bytes | Mapping) or not isinstance(entries, Iterable):
        raise TypeError(
            f"worker '{worker}': {key} must be a list of {kind.__name__} or mimoBuffer "
            f"objects, got {type(entries).__name__}"
        )
    out = list(entries)
    for i, e in enumerate(out):
        if not isinstance(e, kind | mimoBuffer):
            raise TypeError(
                f"worker '{worker}': {key}[{i}] must be a {kind.__name__} or a mimoBuffer, "
                f"got {type(e).__name__}"
            )
    return out


class BufferIO:
    """The buffers, configuration and directories of one worker process.

    The endpoint lists take the manual's form (``list[BufferReader]``, ``list[BufferWriter]``,
    ``list[BufferObserver]``, e.g. to test a worker function without a Control) or the
    buffers themselves, for which the endpoints are created here; both may be mixed.

    Args:
        name: Name of the worker.
        sources: Readers (or buffers) of the worker's sources.
        sinks: Writers (or buffers) of the worker's sinks. A writer is registered with its
            buffer per process: for a buffer given here, in this process.
        observes: Observers (or buffers) of the buffers the worker observes.
        config: The worker configuration.
        setup_dir: Directory of the setup file (to load external data).
        run_dir: Directory of the run (to save data).

    Raises:
        TypeError: If an endpoint list holds something other than its endpoint class or
            a mimoBuffer (e.g. a BufferReader among the sinks).

    Attributes:
        name (str): Name of the worker.
        read (list[BufferReader]): Readers of the source buffers (also ``sources``).
        write (list[BufferWriter]): Writers of the sink buffers (also ``sinks``).
        observe (list[BufferObserver]): Observers of the observed buffers (also ``observes``).
        config (Config): Configuration of the worker.
        setup_dir (Path): Directory of the setup file.
        run_dir (Path): Directory of the run.
        logger (logging.Logger): ``mimocorb2.mimo_worker.<name>``.
        data_in_examples (list[np.ndarray]): A zero event of each source, likewise
            ``metadata_in_examples`` and ``buffer_names_in``; the same triples exist with
            ``out`` (sinks) and ``observe``.
        shutdown_sinks_on_error (bool): Whether a failing worker shuts its sinks down (the
            default, so that the pipeline drains). Set it to False for a process that will
            be restarted: its sinks then stay open for the replacement process, and the
            supervisor reclaims the dead process's writer registrations.

    Examples:
        >>> with io.write[0] as (metadata, data):
        ...     data["x"] = 1.0
        >>> with io.read[0] as (metadata, data):
        ...     pass
        >>> with io.observe[0] as (metadata, data):
        ...     pass
        >>> io.shutdown_sinks()
    """

    def __init__(
        self,
        name: str,
        sources: Sequence[BufferReader | mimoBuffer],
        sinks: Sequence[BufferWriter | mimoBuffer],
        observes: Sequence[BufferObserver | mimoBuffer],
        config: Mapping[str, Any] | None,
        setup_dir: str | Path,
        run_dir: str | Path,
    ) -> None:
        """Takes the worker's endpoints; creates them for entries given as buffers."""
        self.name = str(name)
        self.logger = logging.getLogger(f"mimocorb2.mimo_worker.{self.name}")
        self.config = config if isinstance(config, Config) else Config(config or {})
        self.setup_dir = Path(setup_dir)
        self.run_dir = Path(run_dir)
        self.shutdown_sinks_on_error = True

        given = {
            "sources": _endpoints(self.name, "sources", sources, BufferReader),
            "sinks": _endpoints(self.name, "sinks", sinks, BufferWriter),
            "observes": _endpoints(self.name, "observes", observes, BufferObserver),
        }
        # On a buffer with delivery every_worker, the worker is one reader group (named after
        # it): it receives every event, and its processes compete for them.
        self.read: list[BufferReader] = [
            e if isinstance(e, BufferReader) else BufferReader(e, group=self.name)
            for e in given["sources"]
        ]
        self.observe: list[BufferObserver] = [
            e if isinstance(e, BufferObserver) else BufferObserver(e) for e in given["observes"]
        ]
        self.write: list[BufferWriter] = []
        created: list[BufferWriter] = []
        try:
            for e in given["sinks"]:
                if isinstance(e, BufferWriter):
                    self.write.append(e)
                else:
                    created.append(BufferWriter(e))
                    self.write.append(created[-1])
        except BaseException:
            for writer in created:  # only the registrations made here; the caller owns the rest
                writer.send_flush_event()
            raise
        self.sources = self.read
        self.sinks = self.write
        self.observes = self.observe

        self.data_in_examples: list[np.ndarray] = [r.data_example for r in self.read]
        self.metadata_in_examples: list[np.ndarray] = [r.metadata_example for r in self.read]
        self.buffer_names_in: list[str] = [r.name for r in self.read]
        self.data_out_examples: list[np.ndarray] = [w.data_example for w in self.write]
        self.metadata_out_examples: list[np.ndarray] = [w.metadata_example for w in self.write]
        self.buffer_names_out: list[str] = [w.name for w in self.write]
        self.data_observe_examples: list[np.ndarray] = [o.data_example for o in self.observe]
        self.metadata_observe_examples: list[np.ndarray] = [
            o.metadata_example for o in self.observe
        ]
        self.buffer_names_observe: list[str] = [o.name for o in self.observe]

    @classmethod
    def from_setup(
        cls,
        name: str,
        setup: Mapping[str, Any],
        setup_dir: str | Path,
        run_dir: str | Path,
        buffers: Mapping[str, mimoBuffer],
        base_config: Mapping[str, Any] | None = None,
    ) -> BufferIO:
        """Creates the BufferIO of a worker from its setup entry.

        Args:
            name: Name of the worker.
            setup: The worker's mapping under ``Workers.<name>`` (``sources``, ``sinks``,
                ``observes``, ``config``; other keys are ignored).
            setup_dir: Directory of the setup file.
            run_dir: Directory of the run.
            buffers: The run's buffers by name.
            base_config: The setup's ``base_config`` (already loaded), or None.

        Returns:
            The new BufferIO.

        Raises:
            KeyError: If a buffer name is not in ``buffers``.
            ConfigError: For an invalid configuration.
        """
        lists = {key: _names(setup.get(key), name, key) for key in ("sources", "sinks", "observes")}
        unknown = [
            f"{key}: '{b}'" for key, names in lists.items() for b in names if b not in buffers
        ]
        if unknown:
            known = ", ".join(sorted(buffers)) or "none"
            raise KeyError(
                f"worker '{name}': unknown buffer(s) {', '.join(unknown)} (buffers: {known})"
            )
        config = Config.from_setup(
            setup.get("config"), setup_dir, base_config, where=f"worker '{name}': config"
        )
        return cls(
            name,
            [buffers[b] for b in lists["sources"]],
            [buffers[b] for b in lists["sinks"]],
            [buffers[b] for b in lists["observes"]],
            config,
            setup_dir,
            run_dir,
        )

    def shutdown_sinks(self) -> None:
        """Ends this process's writing to every sink (idempotent).

        A sink buffer ends once all of its writers are done, so its readers get every event
        and then the end of the stream.
        """
        for writer in self.write:
            try:
                writer.send_flush_event()
            except Exception:  # never let one sink keep the others open
                self.logger.exception(
                    "worker '%s': ending sink '%s' failed", self.name, writer.name
                )

    def end_sinks(self, failed: bool) -> None:
        """Ends the sinks at the end of the worker: the one rule for when they end.

        After a normal end (also an orderly stop) the sinks always end. After a failure (an
        exception, a setup error) they end only if ``shutdown_sinks_on_error``: a process that
        will be restarted leaves them open for its replacement.

        Args:
            failed: Whether the worker ends through a failure.
        """
        if not failed or self.shutdown_sinks_on_error:
            self.shutdown_sinks()

    def __getitem__(self, key: str) -> Any:
        """Returns the configuration value of ``key``.

        A missing key is a setup error of the worker: it is logged, the sinks end as after any
        failure (see :meth:`end_sinks`, so that the pipeline drains) and a KeyError is raised.

        Raises:
            KeyError: If the configuration has no ``key``.
        """
        value = self.config.get(key, _MISSING)
        if value is not _MISSING:
            return value
        available = ", ".join(map(str, self.config)) or "none"
        message = (
            f"worker '{self.name}': configuration key '{key}' is missing "
            f"(available keys: {available}); add it to the worker's config in the setup"
        )
        self.logger.error(message)
        self.end_sinks(failed=True)
        raise KeyError(message)

    def __contains__(self, key: object) -> bool:
        """Whether the configuration has ``key``."""
        return key in self.config

    def get(self, key: str, default: Any = None) -> Any:
        """Returns the configuration value of ``key``, or ``default`` if it is missing."""
        return self.config.get(key, default)

    def __str__(self) -> str:
        """Short description: name, buffers and configuration keys."""
        return (
            f"BufferIO(name={self.name!r}, sources={self.buffer_names_in}, "
            f"sinks={self.buffer_names_out}, observes={self.buffer_names_observe}, "
            f"config={dict(self.config)!r})"
        )

    __repr__ = __str__


def _logs_to_stderr(logger: logging.Logger) -> bool:
    """Whether an error logged by ``logger`` already reaches stderr (with its traceback)."""
    if not logger.isEnabledFor(logging.ERROR):
        return False
    if not logger.hasHandlers():
        return logging.lastResort is not None  # logging's fallback prints to stderr
    current: logging.Logger | None = logger
    while current is not None:
        for h in current.handlers:
            if (
                isinstance(h, logging.StreamHandler)
                and h.level <= logging.ERROR
                and getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)
            ):
                return True
        current = current.parent if current.propagate else None
    return False


def run_worker(function: Callable[[BufferIO], Any], buffer_io: BufferIO) -> int:
    """Runs a worker function and shuts its sinks down however it ends.

    An exception of ``function`` is logged with its traceback (logger and stderr) instead of
    propagating. The sinks are shut down afterwards, so downstream workers see the end of
    their streams even if ``function`` crashed or returned without doing so; after an
    exception or a non-zero ``SystemExit`` only if ``buffer_io.shutdown_sinks_on_error``.

    Args:
        function: The worker function; called as ``function(buffer_io)``.
        buffer_io: The worker's BufferIO.

    Returns:
        The worker's exit code (0 on success, 1 after an exception, 130 after
        KeyboardInterrupt, the code of a ``SystemExit``).
    """
    logger = buffer_io.logger
    code = 0
    try:
        function(buffer_io)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        logger.warning("worker '%s' interrupted", buffer_io.name)
        code = 130
    except Exception:
        code = 1
        logger.error("the worker function raised an exception", exc_info=True)
        if not _logs_to_stderr(logger):
            print(
                f"worker '{buffer_io.name}' failed:\n{traceback.format_exc()}",
                file=sys.stderr,
                end="",
            )
    finally:
        buffer_io.end_sinks(failed=code not in (0, 130))
    return code
