"""logship.cli.signals: callbacks run on their own thread, so one that takes a lock the main
thread holds waits for it instead of deadlocking the process."""

from __future__ import annotations

import os
import signal
import threading

from logship.cli.signals import handle_on_thread


def test_callback_runs_on_another_thread_and_waits_for_a_lock_the_main_thread_holds():
    lock = threading.Lock()
    ran = threading.Event()
    threads = []

    def callback(signum):
        threads.append((signum, threading.current_thread()))
        with lock:
            ran.set()

    previous = signal.getsignal(signal.SIGUSR1)
    restore = handle_on_thread({signal.SIGUSR1: callback})
    try:
        with lock:  # an Event.set() in a plain handler would deadlock right here
            os.kill(os.getpid(), signal.SIGUSR1)
            assert not ran.wait(0.3)
        assert ran.wait(5)
        assert threads[0][0] == signal.SIGUSR1
        assert threads[0][1] is not threading.main_thread()
    finally:
        restore()
    assert signal.getsignal(signal.SIGUSR1) == previous


def test_each_signal_reaches_its_own_callback():
    seen = []
    done = threading.Event()

    def record(signum):
        seen.append(signum)
        if len(seen) == 2:
            done.set()

    restore = handle_on_thread({signal.SIGUSR1: record, signal.SIGUSR2: record})
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert done.wait(5)
    finally:
        restore()
    assert sorted(seen) == sorted([signal.SIGUSR1, signal.SIGUSR2])
