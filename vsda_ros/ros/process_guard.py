"""How ``segmentation_node``'s process ends: signals, and the death of its parent.

Standard library only, so :func:`guard` runs at the very start of ``main``, before rclpy and
torch load (seconds): a Ctrl-C during those imports ends the process quietly instead of
printing a ``KeyboardInterrupt`` traceback from inside ``import torch``.

* SIGINT / SIGTERM raise :class:`Shutdown` in the main thread (a ``BaseException``, like
  ``KeyboardInterrupt``, so no ``except Exception`` on the way swallows it); ``main`` then stops
  the worker, destroys the node and shuts the context down.
* The parent's death: ``SIGTERM`` to ``ros2 launch`` ends launch at once without stopping its
  children (upstream launch behaviour), which would leave the node running as an orphan. On
  Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` has the kernel send SIGTERM when the parent
  dies; a watcher thread also polls ``os.getppid()`` (it changes when the parent dies: covers a
  parent that died before the prctl call, and systems without prctl) and sends the process
  SIGTERM, so both end in the same clean shutdown. (The kernel signal follows the parent
  *thread* that started the process: a parent starting the node from a thread that ends
  before it stops the node too.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, TypeAlias

_PR_SET_PDEATHSIG = 1
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: a signal disposition as ``signal.signal`` takes and returns it (a handler, SIG_DFL, SIG_IGN,
#: or None for one not installed from Python)
SignalHandler: TypeAlias = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, unknown model, missing weights, bad device);
    already logged as one FATAL line, ``main`` exits 1."""


class Shutdown(BaseException):
    """Raised in the main thread by the SIGINT/SIGTERM handler; ``args[0]`` is the signal's
    name."""


#: set while the process is starting (rclpy, torch and the model loading): nothing runs yet that
#: needs stopping, and an exception raised into an import cut short crashed the interpreter's
#: teardown (SIGSEGV at 0.8 s in 1 of 8 tries, measured), so a signal then ends the process at once
_STARTING = threading.Event()


def _raise_shutdown(signum: int, frame: object) -> None:  # noqa: ARG001
    if _STARTING.is_set():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    raise Shutdown(signal.Signals(signum).name)


def started() -> None:
    """The node exists: from now on a signal raises :class:`Shutdown` for a clean stop."""
    _STARTING.clear()


def install_signal_handlers() -> dict[int, SignalHandler]:
    """SIGINT and SIGTERM raise :class:`Shutdown` from now on; returns the previous handlers
    (for :func:`restore_signal_handlers`). Call from the main thread (``ValueError``
    otherwise)."""
    return {s: signal.signal(s, _raise_shutdown) for s in SIGNALS}


def ignore_signals() -> None:
    """Ignore SIGINT and SIGTERM (during clean-up: a second Ctrl-C must not interrupt it)."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def restore_signal_handlers(previous: dict[int, SignalHandler]) -> None:
    """Put back the handlers :func:`install_signal_handlers` returned."""
    for s, handler in previous.items():
        signal.signal(s, handler)


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux
    ``PR_SET_PDEATHSIG``); False where that is not available (never raises)."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class ParentWatcher:
    """A daemon thread that calls ``on_orphaned`` once when ``os.getppid()`` differs from
    ``ppid`` (the parent's pid when the process started), checking every ``period_s``."""

    def __init__(self, ppid: int, on_orphaned: Callable[[], None], period_s: float = 0.5) -> None:
        self.ppid = ppid
        self._on_orphaned = on_orphaned
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='parent_watcher', daemon=True)

    def start(self) -> ParentWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            if os.getppid() != self.ppid:
                self._on_orphaned()
                return


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def guard(ppid: int | None = None) -> tuple[dict[int, SignalHandler], ParentWatcher]:
    """Everything :mod:`this module <vsda_ros.ros.process_guard>` sets up, in order: signal
    handlers first (so the parent-death SIGTERM is already handled), then the prctl, then the
    watcher (``ppid``: the parent as early as it was known, default ``os.getppid()`` now; a
    parent that died between that and the prctl is caught on the watcher's first poll).
    Returns the previous signal handlers and the running watcher."""
    ppid = os.getppid() if ppid is None else ppid
    _STARTING.set()  # until started(): a signal ends the process at once
    previous = install_signal_handlers()
    die_with_parent()
    return previous, ParentWatcher(ppid, _terminate_self).start()
