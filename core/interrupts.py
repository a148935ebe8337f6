"""Stop signals as Ctrl-C: one home for how a long run reacts to SIGINT and SIGTERM (QGIS's
Cancel sends SIGINT, then SIGTERM / a kill after a grace; a batch system sends SIGTERM).

:class:`Interrupts` ``(signals=(SIGINT, SIGTERM))`` is a context manager: inside it each
signal raises KeyboardInterrupt at once, so ``finally`` blocks and atomic outputs clean up;
except inside :meth:`Interrupts.deferred` (an optimizer update, a checkpoint write), where it
is raised when the block ends. Installed only in the main thread (signal handlers cannot be
set elsewhere); the previous handlers come back on exit.

A KeyboardInterrupt raised where Python cannot pass it on (in a ``__del__``, a weakref or GC
callback, a ctypes callback such as core/tiff_messages.py's) is printed as "Exception
ignored" and lost, and the run would go on until it is killed. So every stop signal is also
remembered (:func:`request`), and :func:`raise_if_requested`, called by each progress
report, raises it again outside deferred blocks: a run stops at its next progress step.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Sequence

DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_requested = False   # a stop signal came during this run
_deferred = 0        # deferred blocks open (any Interrupts)


def request() -> None:
    """Remember that a stop signal came (a signal handler calls it)."""
    global _requested
    _requested = True


def clear() -> None:
    """Forget a stop signal (a new run in the same process starts)."""
    global _requested
    _requested = False


def raise_if_requested() -> None:
    """KeyboardInterrupt when a stop signal came and no deferred block is open: a lost
    KeyboardInterrupt (module doc) is raised again at a place that passes it on."""
    if _requested and not _deferred:
        raise KeyboardInterrupt


def interrupt_handler(signum, frame) -> None:
    """SIGINT as Python's default, remembered: KeyboardInterrupt at once."""
    request()
    raise KeyboardInterrupt


class Interrupts:
    """SIGINT / SIGTERM (or ``signals``) as KeyboardInterrupt (module doc)."""

    def __init__(self, signals: Sequence[int] = DEFAULT_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.depth, self.pending, self._previous = 0, False, {}

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handler(self, signum, frame) -> None:
        request()
        if self.depth:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block that a signal does not cut: the KeyboardInterrupt comes when it ends."""
        global _deferred
        self.depth += 1
        _deferred += 1
        try:
            yield
        finally:
            self.depth -= 1
            _deferred -= 1
        if not self.depth and self.pending:
            self.pending = False
            raise KeyboardInterrupt


def sigterm_as_interrupt() -> Interrupts:
    """SIGTERM (e.g. QGIS cancelling the process) handled like Ctrl-C, which Python already
    turns into KeyboardInterrupt: outputs are cleaned up."""
    return Interrupts((signal.SIGTERM,))
