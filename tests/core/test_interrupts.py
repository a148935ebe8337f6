"""core/interrupts.py: inside Interrupts each of its signals raises KeyboardInterrupt at once,
except within ``deferred()`` where it comes when the block ends; outside a thread other than the
main one nothing is installed; the previous handlers come back on exit. Real signals are sent
to this process (os.kill), never to anything else."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from crossearth_sar.core import interrupts
from crossearth_sar.core.atomic import atomic_output
from crossearth_sar.core.interrupts import DEFAULT_SIGNALS, Interrupts, sigterm_as_interrupt


@pytest.fixture
def own_handlers():
    """SIGTERM and SIGUSR1 handlers of this test that count the signals they get (restored after)."""
    got = []

    def mine(signum, frame):
        got.append(signum)

    before = {s: signal.signal(s, mine) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        yield mine, got
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_default_signals_are_sigint_and_sigterm():
    assert DEFAULT_SIGNALS == (signal.SIGINT, signal.SIGTERM)
    assert Interrupts().signals == (signal.SIGINT, signal.SIGTERM)
    assert sigterm_as_interrupt().signals == (signal.SIGTERM,)


def test_sigterm_becomes_keyboard_interrupt_and_the_handler_comes_back(own_handlers):
    mine, got = own_handlers
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt() as stops:
            assert signal.getsignal(signal.SIGTERM) == stops._handler
            os.kill(os.getpid(), signal.SIGTERM)
            reached.append("after kill")   # the handler raises before this line
    assert reached == []
    assert signal.getsignal(signal.SIGTERM) is mine
    os.kill(os.getpid(), signal.SIGTERM)   # the restored handler is the one that runs now
    assert got == [signal.SIGTERM]


def test_sigterm_as_interrupt_leaves_sigint_alone():
    before = signal.getsignal(signal.SIGINT)
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGINT) is before
    assert signal.getsignal(signal.SIGINT) is before


def test_sigint_and_sigterm_both_interrupt_and_both_handlers_come_back():
    before = {s: signal.getsignal(s) for s in DEFAULT_SIGNALS}
    for sig in DEFAULT_SIGNALS:
        with pytest.raises(KeyboardInterrupt):
            with Interrupts() as stops:
                # Python's own SIGINT handler raises KeyboardInterrupt too: check it was replaced
                assert signal.getsignal(sig) == stops._handler
                os.kill(os.getpid(), sig)
        assert {s: signal.getsignal(s) for s in DEFAULT_SIGNALS} == before


def test_handlers_come_back_on_a_normal_exit_and_on_an_error(own_handlers):
    mine, got = own_handlers
    with Interrupts((signal.SIGUSR1,)):
        pass
    assert signal.getsignal(signal.SIGUSR1) is mine
    with pytest.raises(ValueError):
        with Interrupts((signal.SIGUSR1,)):
            raise ValueError("boom")
    assert signal.getsignal(signal.SIGUSR1) is mine
    assert got == []


def test_deferred_delays_the_interrupt_to_the_end_of_the_block():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with Interrupts((signal.SIGUSR1,)) as stops:
            with stops.deferred():
                os.kill(os.getpid(), signal.SIGUSR1)
                steps.append("update finished")   # not cut
                assert stops.pending is True
            steps.append("after the block")        # never reached: raised as the block ends
    assert steps == ["update finished"]
    assert stops.pending is False and stops.depth == 0


def test_nested_deferred_blocks_raise_once_when_the_outermost_ends():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with Interrupts((signal.SIGUSR1,)) as stops:
            with stops.deferred():
                with stops.deferred():
                    os.kill(os.getpid(), signal.SIGUSR1)
                    steps.append("inner")
                steps.append("outer")              # the inner end does not raise
                assert stops.depth == 1 and stops.pending
            steps.append("never")
    assert steps == ["inner", "outer"]


def test_deferred_without_a_signal_raises_nothing():
    with Interrupts((signal.SIGUSR1,)) as stops:
        with stops.deferred():
            value = 41
        value += 1
        # after a deferred block the signal cuts at once again
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGUSR1)
    assert value == 42 and stops.pending is False


def test_deferred_block_ending_in_its_own_error_keeps_the_depth_right():
    with Interrupts((signal.SIGUSR1,)) as stops:
        with pytest.raises(ValueError):
            with stops.deferred():
                raise ValueError("checkpoint failed")
        assert stops.depth == 0
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGUSR1)


def test_not_installed_outside_the_main_thread(own_handlers):
    mine, got = own_handlers
    seen = {}

    def work():
        with Interrupts((signal.SIGUSR1,)) as stops:
            seen["previous"] = dict(stops._previous)
            seen["handler"] = signal.getsignal(signal.SIGUSR1)

    t = threading.Thread(target=work)
    t.start()
    t.join(5)
    assert seen == {"previous": {}, "handler": mine}
    assert signal.getsignal(signal.SIGUSR1) is mine


def test_sigterm_inside_an_atomic_output_leaves_nothing(tmp_path):
    """What the module is for: a cancelled run's outputs clean up."""
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt(), atomic_output(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGTERM)
    assert list(tmp_path.iterdir()) == []


LOST_INTERRUPT_CHILD = r'''
import signal, sys, time
from crossearth_sar.core import interrupts
from crossearth_sar.crossearth_cli.reporting import Reporter

signal.signal(signal.SIGINT, interrupts.interrupt_handler)   # as ces's main() installs it
class Finalized:
    def __del__(self):     # the signal lands here; Python prints "Exception ignored" and drops it
        time.sleep(0.05)
report = Reporter("none")
print("ready", flush=True)
try:
    for i in range(400):
        Finalized()
        report("descriptors", i, 400)
except KeyboardInterrupt:
    print("stopped", flush=True)
    sys.exit(130)
print("ran to the end", flush=True)
'''


def test_a_sigint_lost_in_a_finalizer_stops_the_run_at_its_next_progress_step():
    """A KeyboardInterrupt raised inside a ``__del__`` (or a C callback) is printed as
    "Exception ignored" and lost; the run then went on until QGIS killed it after its grace.
    The signal is remembered and raised again by the next progress report."""
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", LOST_INTERRUPT_CHILD], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = child.communicate(timeout=20)
    assert out.strip() == "stopped" and child.returncode == 130
    assert time.monotonic() - sent < 2.0
    assert "Exception ignored in" in err and "KeyboardInterrupt" in err   # it was lost once


def test_a_remembered_interrupt_waits_for_a_deferred_block():
    """The progress check never cuts a deferred block (an optimizer step, a checkpoint
    write); after it, a remembered signal is raised at each progress step until cleared."""
    interrupts.clear()
    reached = False
    try:
        with pytest.raises(KeyboardInterrupt):
            with Interrupts((signal.SIGUSR1,)) as guard:
                with guard.deferred():
                    os.kill(os.getpid(), signal.SIGUSR1)
                    interrupts.raise_if_requested()      # inside the deferred block: nothing
                    reached = True
        assert reached
        with pytest.raises(KeyboardInterrupt):
            interrupts.raise_if_requested()              # remembered: raised again
    finally:
        interrupts.clear()
    interrupts.raise_if_requested()                      # cleared: nothing
