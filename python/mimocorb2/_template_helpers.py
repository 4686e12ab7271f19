"""Private helpers of :mod:`mimocorb2.worker_templates`.

The public classes (the errors and the templates) live in :mod:`mimocorb2.worker_templates`,
so that they pickle and are documented under that name; this module holds what they are built
from: the common base of the two errors and its message formatting, the byte-copy helpers of
the event loops, the short descriptions used in error messages, the guard that ends a
template's sinks when its loop ends, and the checks of what a Filter's or a Processor's user
function returned (they return what is wrong; the template raises).
"""

from __future__ import annotations

import pickle
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from mimocorb2.mimo_worker import BufferIO


# ----- errors -----


def _worker_name(instance_or_name: Any) -> str:
    if isinstance(instance_or_name, str):
        return instance_or_name
    name = getattr(instance_or_name, "name", None)
    if isinstance(name, str):
        return name
    return type(instance_or_name).__name__


def _picklable(value: Any) -> Any:
    """``value`` if it can be pickled, else its repr (errors cross process boundaries)."""
    if value is None:
        return None
    try:
        pickle.dumps(value)
    except Exception:
        return repr(value)
    return value


class _WorkerError(RuntimeError):
    """Common part of :class:`~mimocorb2.worker_templates.SetupError` and ``UfuncError``."""

    def __init__(self, instance_or_name: Any, message: str, exception: Any = None) -> None:
        self.worker_name = _worker_name(instance_or_name)
        self.message = str(message)
        self.exception = exception
        text = f"worker '{self.worker_name}': {self.message}"
        if isinstance(exception, BaseException):
            text += f" ({type(exception).__name__}: {exception})"
        elif exception is not None:
            text += f" ({exception})"
        super().__init__(text)


# ----- copying -----


class _ByteViews:
    """Caches the ``uint8`` views of slot arrays (slot views are created once per slot)."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, array: np.ndarray) -> np.ndarray:
        hit = self._cache.get(id(array))
        if hit is not None and hit[0] is array:
            return hit[1]
        view = array.view(np.uint8)
        self._cache[id(array)] = (array, view)
        return view


def _copy_into(dst: np.ndarray, value: Any) -> None:
    """Copies ``value`` into the slot array ``dst``: bytewise when the layouts are identical.

    Raises:
        ValueError, TypeError: If ``value`` cannot be assigned to ``dst``.
    """
    if (
        isinstance(value, np.ndarray)
        and value.dtype == dst.dtype
        and value.shape == dst.shape
        and value.flags.c_contiguous
    ):
        dst.view(np.uint8)[:] = value.view(np.uint8)
    else:
        dst[:] = value


def _describe(array: np.ndarray) -> str:
    return f"{array.shape[0]} element(s) of dtype {array.dtype}"


def _given(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ----- sink guard -----


class _SinkGuard:
    """Ends a worker's sinks on leaving (``BufferIO.end_sinks``); an ``Exception`` is a failure.

    ``GeneratorExit`` (the consumer of an Exporter stopped early) and ``KeyboardInterrupt``
    (an orderly stop) end the sinks like a normal end.
    """

    __slots__ = ("_io",)

    def __init__(self, io: BufferIO) -> None:
        self._io = io

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._io.end_sinks(failed=exc_type is not None and issubclass(exc_type, Exception))


# ----- result checking -----


class _ResultProblem(NamedTuple):
    """What is wrong with the result of a user function, for the template's UfuncError."""

    message: str
    exception: BaseException | None = None


def _filter_targets(n: int, result: Any) -> range | list[int] | _ResultProblem:
    """The indices of the ``n`` sinks a Filter's ufunc result selects, or what is wrong."""
    if result is None:
        return []
    if isinstance(result, list | tuple) or (isinstance(result, np.ndarray) and result.ndim > 0):
        if len(result) != n:
            return _ResultProblem(
                f"the filter function returned {len(result)} entries for {n} sink(s); "
                "return one bool per sink (or a single bool for all)"
            )
        try:
            return [i for i in range(n) if bool(result[i])]
        except (TypeError, ValueError) as e:
            return _ResultProblem("the filter function must return bools, one per sink", e)
    if isinstance(result, bool | np.bool_ | int | np.integer | np.ndarray):
        return range(n) if result else []
    if not result:
        return []
    return _ResultProblem(
        f"the filter function must return a bool or a list of bools, got {_given(result)}"
    )


def _processor_result_problem(result: Any, n: int) -> _ResultProblem | None:
    """What is wrong with a Processor's ufunc result unless it is a list of ``n`` results."""
    if not isinstance(result, list | tuple) or len(result) != n:
        got = f"{len(result)} entries" if isinstance(result, list | tuple) else _given(result)
        return _ResultProblem(
            f"the processor function must return None or a list with one "
            f"result per sink ({n}), got {got}"
        )
    return None
