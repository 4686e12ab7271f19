"""The errors of the worker templates: :class:`SetupError` and :class:`UfuncError`.

Both are re-exported by (and documented under) :mod:`mimocorb2.worker_templates`.
"""

from __future__ import annotations

from typing import Any

from mimocorb2._template_helpers import _picklable, _WorkerError

__all__ = ["SetupError", "UfuncError"]


class SetupError(_WorkerError):
    """A worker's setup does not fit its template (buffer counts, layouts, configuration).

    Creating the exception has no side effects; the template shuts its sinks down before
    raising it where that is needed.

    Args:
        instance_or_name: The template instance (or the worker name).
        message: What is wrong and how to fix it.
        exception: The underlying exception, if any.

    Attributes:
        worker_name (str): Name of the worker.
        message (str): The message without the worker name.
        exception: The underlying exception or None.
    """

    __module__ = "mimocorb2.worker_templates"  # the manual's import path (and pickles)

    def __init__(self, instance_or_name: Any, message: str, exception: Any = None) -> None:
        """Builds the message ``worker '<name>': <message>``."""
        super().__init__(instance_or_name, message, exception)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickles by value (workers report errors to other processes)."""
        return (type(self), (self.worker_name, self.message, _picklable(self.exception)))


class UfuncError(_WorkerError):
    """The user function of a template failed or returned something unusable.

    Creating the exception has no side effects; the template shuts its sinks down before
    raising it.

    Args:
        instance_or_name: The template instance (or the worker name).
        message: What went wrong.
        exception: The exception raised by the user function, if any.
        ufunc_input: The input of the failing call (a copy), if any.
        ufunc_output: The unusable result, if any.

    Attributes:
        worker_name (str): Name of the worker.
        message (str): The message without the worker name.
        exception: The underlying exception or None.
        ufunc_input: The input of the failing call or None.
        ufunc_output: The unusable result or None.
    """

    __module__ = "mimocorb2.worker_templates"  # the manual's import path (and pickles)

    def __init__(
        self,
        instance_or_name: Any,
        message: str,
        exception: Any = None,
        ufunc_input: Any = None,
        ufunc_output: Any = None,
    ) -> None:
        """Builds the message ``worker '<name>': <message>``."""
        super().__init__(instance_or_name, message, exception)
        self.ufunc_input = ufunc_input
        self.ufunc_output = ufunc_output

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickles by value (workers report errors to other processes)."""
        return (
            type(self),
            (
                self.worker_name,
                self.message,
                _picklable(self.exception),
                _picklable(self.ufunc_input),
                _picklable(self.ufunc_output),
            ),
        )
