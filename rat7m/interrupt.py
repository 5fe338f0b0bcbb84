"""Ctrl-C and SIGTERM from the first instant of a command: one line, exit 130 or 143, never a traceback.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be: during the
imports of numpy, OpenCV or matplotlib (the first ~0.2-1 s of every command) that is a 20-40 line
traceback, and SIGTERM (``kill``, SLURM's ``scancel``, a container stopping) kills at once without
running any clean-up. A run has three phases, each with its handler:

1. **Start-up** (imports, argument parsing; nothing written yet): :func:`at_start`, called by every
   entry point before its first heavy import, makes both signals print one line and end the process
   at once (``os._exit``): there is nothing to clean up, and no half-imported module can swallow it.
2. **Work** (:func:`raising`, entered by :func:`rat7m.cli.run_main` around ``main``): SIGINT raises
   ``KeyboardInterrupt`` and SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``), so every
   ``finally`` and ``except BaseException`` removes its temporary files and stops its workers, and
   ``run_main`` prints the one line. An exception Python cannot raise where the handler ran (inside a
   finaliser) is not lost: the signal is sent again once the finaliser has returned (:func:`_not_lost`).
   A loop waiting on a pool of processes or threads only notes the signals (:class:`deferred`): raised
   there, the exception could leave a lock taken that the pool needs to stop; it is raised once the
   pool is stopped.
3. **After** (``main`` has returned, or the line has been printed): back to phase 1's handler, so a
   signal during interpreter shutdown (joining threads, flushing) ends the process too, with the
   one line if it has not been printed yet, silently if it has (:func:`reported`).

A signal that was ignored when the process started (``nohup``, a background job of a script) stays
ignored, as the shell meant. What is out of reach is Python's own start-up before the first line of
the command runs (~10 ms: the interpreter, ``site``, compiling a top-level script; ~25 ms more with
an editable install's import hook): a signal then ends the process as Python does, unless the
launcher holds it blocked until :func:`at_start` (which unblocks it).

Entry points import this first, so it imports nothing that is not already loaded when Python starts.
"""

from __future__ import annotations

import _thread
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typeshed has no stub for _signal; signal's functions are the same ones
    import signal
    from collections.abc import Callable
else:  # the C module behind ``signal``: already loaded by Python at start-up, where ``signal`` builds its enums
    import _signal as signal

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "INTERRUPTED",
    "SIGNALS",
    "TERMINATED",
    "Terminated",
    "at_start",
    "deferred",
    "exit_code",
    "message",
    "raising",
    "reported",
]

#: Exit code after Ctrl-C (128 + SIGINT, what a shell reports for a process stopped by it).
EXIT_INTERRUPTED = 130
#: Exit code after SIGTERM (128 + SIGTERM, likewise).
EXIT_TERMINATED = 143
#: The one line printed on stderr after Ctrl-C.
INTERRUPTED = "interrupted; rerun the same command to resume"
#: The one line printed on stderr after SIGTERM.
TERMINATED = "terminated; rerun the same command to resume"

#: The signals a command answers with one line and its exit code.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM raised as an exception, so that the clean-up of Ctrl-C runs for it too (exit 143)."""


def exit_code(exc: BaseException | int) -> int:
    """130 for Ctrl-C (``KeyboardInterrupt`` or SIGINT), 143 for SIGTERM (:class:`Terminated` or SIGTERM)."""
    terminated = isinstance(exc, Terminated) or exc == signal.SIGTERM
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def message(exc: BaseException | int) -> str:
    """The one line to print for that interruption."""
    return TERMINATED if exit_code(exc) == EXIT_TERMINATED else INTERRUPTED


#: Whether the one line has been printed (a later signal then ends the process without a second one).
_reported = False


def _exit_now(signum: int, frame: object) -> None:
    """Phase 1 and 3: say it in one line (unless said already) and end the process now (nothing to clean up)."""
    if _reported:
        os._exit(exit_code(signum))
    for stream in (sys.stdout, sys.stderr):  # a summary already printed into a pipe is not lost
        try:  # noqa: SIM105  (contextlib would be one more import at start-up)
            stream.flush()
        except Exception:  # a write this signal cut short (reentrant flush): nothing more to save
            pass
    os.write(2, (message(signum) + "\n").encode())
    os._exit(exit_code(signum))


#: How many exceptions :func:`_raise` has raised: a re-send is dropped if another was raised since.
_raised = 0


def _raise(signum: int, frame: object) -> None:
    """Phase 2: an exception, so that the clean-up runs."""
    global _raised
    _raised += 1
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _not_lost(unraisable: Any) -> None:
    """Phase 2's ``sys.unraisablehook``: our exception, raised where Python cannot raise it, is raised again.

    A signal's handler runs in whatever Python code is running, and in a finaliser (a weakref callback,
    ``__del__``: importlib runs one as it drops a module lock, at any import) Python prints the exception
    as "Exception ignored" and goes on: the Ctrl-C would be lost and the run would finish (seen under
    load). The signal is sent again instead, from a thread of its own: that thread runs only when this
    one lets go of the GIL (at most a switch interval, 5 ms, later), by when the finaliser has returned;
    should the handler land in another one, the same happens again. (Sent from here, the handler would
    run at once, inside this hook, where its exception is lost too.) Anything else goes to the previous hook.
    """
    exc = unraisable.exc_value
    if type(exc) in (KeyboardInterrupt, Terminated):
        signum = signal.SIGTERM if type(exc) is Terminated else signal.SIGINT
        try:
            _thread.start_new_thread(_send_again, (os.getpid(), signum, _raised))
            return
        except RuntimeError:  # no new thread (the interpreter is ending): say it as Python does
            pass
    (_hooks[-1] if _hooks else sys.__unraisablehook__)(unraisable)


def _send_again(pid: int, signum: int, raised: int) -> None:
    """The re-send thread: the signal again, unless an interruption has been raised since (it would be a second one)."""
    if _raised == raised:
        os.kill(pid, signum)


def _install(handler: object) -> dict[int, object]:
    """Install ``handler`` for :data:`SIGNALS` not ignored; return the previous handlers.

    A signal whose handler raises halfway (a pending one runs inside ``signal.signal``) finds the ones
    replaced so far put back before it goes on. Nothing outside the main thread (only it can set Python's
    handlers).
    """
    previous: dict[int, object] = {}
    try:
        for sig in SIGNALS:
            old = signal.getsignal(sig)
            if old is signal.SIG_IGN:
                continue
            previous[sig] = old  # before: the handler may raise inside the call, after the swap
            try:
                signal.signal(sig, handler)  # type: ignore[arg-type]
            except ValueError:  # not the main thread
                del previous[sig]
                return previous
    except BaseException:
        _restore(previous)
        raise
    return previous


def _restore(previous: dict[int, object]) -> None:
    """Put back every handler of ``previous``, even if a signal's handler raises meanwhile (raised after).

    ``signal.signal`` runs pending handlers before it swaps: one that raises there leaves the swap undone,
    so it is tried again.
    """
    raised: BaseException | None = None
    for sig, handler in previous.items():
        while True:
            try:
                signal.signal(sig, handler)  # type: ignore[arg-type]
                break
            except ValueError:  # not the main thread: nothing of ours to put back here
                raise
            except BaseException as exc:  # a pending signal's handler (ours, raising): the swap is still due
                raised = exc
    if raised is not None:
        raise raised


def _raise_each(signums: list[int]) -> None:
    """Raise each signal for its handler, the later ones even if one raises: the last one's exception goes on."""
    if signums:
        try:
            signal.raise_signal(signums[0])
        finally:
            _raise_each(signums[1:])


def at_start() -> None:
    """Entry points call this before any heavy import: a signal now ends the process with one line.

    A launcher that held the signals blocked while Python started (as a process pool does for its
    workers, and the tests do) gets them acted on now: they are unblocked once the handler is set.
    """
    _install(_exit_now)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


def reported() -> None:
    """The line is being printed: a further signal (during clean-up or shutdown) ends the process silently.

    That is, where :func:`at_start` set the handlers (a command's process), not in a caller's (a test's).
    """
    global _reported
    _reported = True


class raising:  # a context manager without contextlib: one import less at start-up
    """Within the block SIGINT raises ``KeyboardInterrupt`` and SIGTERM :class:`Terminated`; restored after.

    Does nothing outside the main thread (only it receives Python's signal handlers).
    """

    def __enter__(self) -> None:
        self._previous = _install(_raise)
        self._hook = None
        if self._previous and sys.unraisablehook is not _not_lost:  # nested: the outer block's hook stays
            self._hook = sys.unraisablehook
            _hooks.append(self._hook)
            sys.unraisablehook = _not_lost

    def __exit__(self, *exc_info: object) -> None:
        _restore(self._previous)
        if self._hook is not None:
            _hooks.remove(self._hook)
            if sys.unraisablehook is _not_lost:  # not if code in the block installed its own meanwhile
                sys.unraisablehook = self._hook


class deferred:  # likewise
    """Within the block SIGINT and SIGTERM are only noted (the list ``as`` gives) and ``wake()`` is called; on
    leaving it the handlers are restored and each noted signal acts then: never lost, never inside a lock.

    For a loop that waits on a pool (of processes or threads). Python runs a signal's handler between any two
    bytecodes of the main thread, and an exception raised there can leave a lock taken for good:
    ``concurrent.futures.wait`` and ``as_completed`` take each future's lock in turn, and one taken before
    the exception is never released. A pool thread finishing that future, or the pool's manager thread
    as it stops, then waits for it for ever, and so does the interpreter, which joins them at exit (seen:
    "terminated" said, the process still there 30 s later). In the block the loop sees the note instead,
    stops its pool, and leaves the block: the exception comes there, where no lock is held. ``wake`` is
    called from the handler, so it must be reentrant (``queue.SimpleQueue.put`` is). Outside the main
    thread (no handler of ours runs there) the block does nothing.
    """

    def __init__(self, wake: Callable[[], object]) -> None:
        self._wake = wake
        self.noted: list[int] = []
        self._previous: dict[int, object] = {}
        self._left = False

    def _note(self, signum: int, frame: object) -> None:
        if self._left:  # left installed by a swap a signal cut short: act as the handler it replaced, and go
            previous = self._previous.get(signum)
            signal.signal(signum, previous if callable(previous) else signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.noted.append(signum)
        self._wake()

    def __enter__(self) -> list[int]:
        self._previous = _install(self._note)
        return self.noted

    def __exit__(self, *exc_info: object) -> None:
        try:
            _restore(self._previous)
        finally:
            self._left = True  # not before: a signal coming as the handlers are put back is still noted
            # SIGTERM last: if both came, its Terminated is the exception that goes on (exit 143)
            _raise_each(sorted(set(self.noted), key=lambda signum: signum == signal.SIGTERM))


#: The unraisable hooks :class:`raising` replaced, innermost last.
_hooks: list[Any] = []
