"""SIGTERM and SIGHUP stop a benchmark the way Ctrl-C does: everything it started is stopped.

Python's default action for SIGTERM and SIGHUP ends the process at once, without `finally`
blocks or context managers' exits. A benchmark's embedded PostgreSQL and Redis run in sessions
of their own (a launcher's servers are meant to outlive a crashed launcher, for the next run to
adopt), so a benchmark killed that way (`timeout`, a cancelled CI job, a closed terminal) left
them running on a temporary directory that nothing adopts, and a Guildhouse worker with them.

`main()` runs a benchmark's entry point with both signals turned into a Ctrl-C, once:

- inside `asyncio.run` / `uvloop.run` (both an `asyncio.Runner` on Python 3.11+), the runner's
  own SIGINT handler is called, which cancels the main task: each `async with` and `finally`
  unwinds at its `await` (the worker is stopped, the sandbox closed), and the runner then raises
  KeyboardInterrupt. A KeyboardInterrupt raised by a Python signal handler in the middle of the
  event loop would instead land between any two bytecodes, in the loop's own bookkeeping or a
  callback, with the main task left to `asyncio.run`'s final cancel;
- outside an event loop, KeyboardInterrupt is raised where the program is, as Ctrl-C's is;
- with SIGINT ignored (a background job of a non-interactive shell), no runner installs its
  handler: the event loop's tasks, if one runs, are cancelled instead;
- while embedded servers are being started (`held()`, used by `bench.common.backing()`), the
  signal waits until they are up, so that the `with` that started them stops them: a
  KeyboardInterrupt in the middle of `pg_ctl start` or of waiting for Redis's port would leave
  a server that nothing stops.

Either way the `with backing()` around the run exits (the servers stop, the temporary directory
is removed), and the process exits with status 128 + the signal's number. A second SIGTERM or
SIGHUP is ignored while that cleanup runs (a signal sent to the process group and forwarded by
`python -m bench` arrives twice); Ctrl-C still works as a second interrupt.

`call()` is `python -m bench`'s side: it runs a benchmark as a child process, passes SIGTERM
and SIGHUP on to it and waits for it to finish its cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import NoReturn

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class _State:
    received: int | None = None  # the signal (SIGTERM, SIGHUP) the run is stopping for
    held = False  # inside held(): a stop waits
    pending: int | None = None  # the signal that came while held


_state = _State()


def received() -> int | None:
    """The signal (SIGTERM or SIGHUP) this process is stopping for, if any."""
    return _state.received


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """Do what Ctrl-C does at this point of the program."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        # asyncio.Runner's handler inside asyncio.run (cancels the main task once, raises
        # KeyboardInterrupt on a second interrupt), else signal.default_int_handler.
        handler(signal.SIGINT, frame)
        return
    # SIGINT ignored (a background job of a non-interactive shell): no runner's handler to
    # call. Inside an event loop, cancel its tasks, which unwinds them at their awaits.
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise KeyboardInterrupt from None
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.call_soon_threadsafe(lambda: None)  # wake the loop if it sleeps in select()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.received is not None:
        return  # already stopping: let the cleanup run
    _state.received = signum
    if _state.held:
        _state.pending = signum
        return
    _interrupt(signum, frame)


def _install() -> None:
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Let a stop (SIGTERM, SIGHUP or SIGINT) wait until the block is done: for starting what
    the enclosing `with` stops, so that it is not left half-started. No-op off the main thread."""
    if threading.current_thread() is not threading.main_thread() or _state.held:
        yield
        return
    sigint = signal.getsignal(signal.SIGINT)

    def later(signum: int, frame: FrameType | None) -> None:
        _state.pending = _state.pending or signum

    _state.held, _state.pending = True, None
    signal.signal(signal.SIGINT, later)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, sigint)
        _state.held = False
    pending, _state.pending = _state.pending, None
    if pending is not None:
        _interrupt(pending, None)


def main(entry: Callable[[], int | None]) -> NoReturn:
    """Run a benchmark's entry point (a function returning its exit status, or None for 0)
    with SIGTERM and SIGHUP stopping it as Ctrl-C does; exit 128 + the signal's number then."""
    _install()
    try:
        code = entry()
    except BaseException as exc:
        got = _state.received
        if got is None:
            raise
        name = signal.Signals(got).name
        if not isinstance(exc, KeyboardInterrupt | asyncio.CancelledError | SystemExit):
            # What failed during the cleanup: worth seeing, but the run was stopped anyway.
            import traceback

            traceback.print_exc()
        print(f"bench: stopped by {name}", file=sys.stderr)
        raise SystemExit(128 + got) from None
    if _state.received is not None:
        # The run finished (the signal came too late to interrupt it) but was asked to stop.
        raise SystemExit(128 + _state.received)
    raise SystemExit(code or 0)


def interrupted(code: int) -> bool:
    """Did a benchmark process with this exit status stop on a signal rather than finish?"""
    return code < 0 or code - 128 in (signal.SIGINT, *SIGNALS)


def call(argv: list[str]) -> int:
    """Run `argv` (a benchmark) as a child process and return its exit status (128 + the
    signal's number when a signal ended it). SIGTERM and SIGHUP sent to this process are passed
    on to the child, which stops what it started before it exits; this process waits for that.
    SIGINT is not passed on: a Ctrl-C reaches the child from the terminal (both are in its
    foreground process group), and this process ignores it while the child runs, as system(3)
    does, so that it does not stop waiting before the child has cleaned up."""
    child: subprocess.Popen[bytes] | None = None
    got: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        got.append(signum)
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    # Python-level handlers: exec resets them to the default in the child (an ignored signal
    # would stay ignored there).
    before = {sig: signal.signal(sig, forward) for sig in (*SIGNALS, signal.SIGINT)}
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        if got:  # stopped before it started
            return 128 + got[0]
        child = subprocess.Popen(argv)
        if got:  # a signal came while it was being started
            forward(got[0], None)
        code = child.wait()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    if got and not interrupted(code):
        code = 128 + got[0]
    return 128 - code if code < 0 else code
