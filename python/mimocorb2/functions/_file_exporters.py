"""The body of ``exporters.hdf5``, ``exporters.parquet`` and ``exporters.root``.

The worker functions (with their manual text) are in :mod:`mimocorb2.functions.exporters`;
the file writers in :mod:`mimocorb2._file_formats`. This module is imported when one of the
functions runs, and imports the format's library only then.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path
from typing import Any

from mimocorb2 import _file_formats as ff
from mimocorb2.functions._export_loop import _interval, _run_guarded, export_loop
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import Exporter, SetupError

_MAX_FILES = 10_000


def _run_info(io: BufferIO) -> dict[str, str]:
    """``setup_yaml`` (the run directory's effective setup) and ``run_start`` (ISO 8601, UTC).

    The run start is when the run directory's ``setup.yaml`` was written (the run's
    preparation); without that file (a function run outside a Control) it is now.
    """
    setup = Path(io.run_dir) / "setup.yaml"
    try:
        text = setup.read_text()
        started = setup.stat().st_mtime
    except (OSError, UnicodeDecodeError):
        text, started = "", time.time()
    start = _dt.datetime.fromtimestamp(started, _dt.UTC).isoformat(timespec="seconds")
    return {"setup_yaml": text, "run_start": start}


def _target_names(io: BufferIO, fmt: str, source: str) -> tuple[str, str]:
    """Stem and ending of the file from config ``filename`` (default: the source's name)."""
    filename = io.get("filename", source)
    name = source if filename is None else str(filename)
    suffixes = ff.SUFFIXES[fmt]
    for suffix in suffixes:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return name, suffixes[0]


def _options(io: BufferIO, fmt: str) -> dict[str, Any]:
    compression = io.get("compression")
    options: dict[str, Any] = {
        "compression": None if compression in (None, False) else str(compression).lower(),
        "compression_level": io.get("compression_level"),
    }
    if fmt == "parquet":
        part = io.get("part_interval")
        options["part_interval"] = None if part is None else _interval(io, "part_interval", 60)
    return options


def _open_first_free(
    exporter: Exporter, fmt: str, stem: str, suffix: str, attrs: dict[str, Any], options: Any
) -> ff.EventFileWriter:
    """Opens ``<stem><suffix>`` or, if taken, the first free ``<stem>_<k><suffix>`` (k ≥ 2)."""
    buffer = exporter.reader.buffer
    run_dir = Path(exporter.io.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for k in range(1, _MAX_FILES + 1):
        path = run_dir / (f"{stem}{suffix}" if k == 1 else f"{stem}_{k}{suffix}")
        try:
            return ff.open_writer(
                fmt, path, buffer.data_dtype, buffer.data_length, attrs=attrs, **options
            )
        except FileExistsError:
            continue
        except ValueError as e:
            raise SetupError(exporter.io.name, f"cannot write {path}: {e}") from None
    raise SetupError(exporter.io.name, f"no free file name for {stem}{suffix} in {run_dir}")


def run(buffer_io: BufferIO, fmt: str) -> None:
    """Runs the exporter of ``fmt`` (``hdf5``, ``parquet`` or ``root``) on ``buffer_io``."""
    who = f"exporters.{fmt}"
    exporter = Exporter(buffer_io)
    problems = ff.config_problems(fmt, buffer_io.config, who)
    if problems:
        raise SetupError(buffer_io.name, "; ".join(problems))
    buffer = exporter.reader.buffer
    problems = ff.dtype_problems(fmt, buffer.data_dtype)
    if problems:
        raise SetupError(
            buffer_io.name, f"{who} cannot write source '{buffer.name}': " + "; ".join(problems)
        )
    interval = _interval(buffer_io, "flush_interval", 1.0)
    stem, suffix = _target_names(buffer_io, fmt, buffer.name)
    attrs: dict[str, Any] = {
        "buffer": buffer.name,
        **_run_info(buffer_io),
        "worker": buffer_io.name,
        "pid": os.getpid(),
    }
    try:
        writer = _open_first_free(exporter, fmt, stem, suffix, attrs, _options(buffer_io, fmt))
    except ff.MissingExtraError as e:
        raise SetupError(buffer_io.name, str(e)) from None
    exporter.logger.info("worker '%s': writing %s", buffer_io.name, writer.path)

    def body() -> None:
        try:
            export_loop(exporter, interval, writer.write, writer.flush)
        finally:
            writer.close()
        exporter.logger.info(
            "worker '%s': wrote %d events to %s", buffer_io.name, len(writer), writer.path
        )

    _run_guarded(buffer_io, body)
