"""Functions used inside test graphs.

The helper process imports this module by reference (the tests put this
directory on the helper's PYTHONPATH), just as a real scheduler needs the
client's modules importable.
"""

import os
import time


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def total(*xs):
    return sum(xs)


class ExitOnUnpickle:
    """Unpickling this object terminates the process (crash-isolation tests)."""

    def __init__(self, code=3):
        self.code = code

    def __reduce__(self):
        return (os._exit, (self.code,))


class SleepOnUnpickle:
    """Unpickling this object sleeps (timeout / parallelism tests)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def __reduce__(self):
        return (time.sleep, (self.seconds,))


class RaiseOnUnpickle:
    """Unpickling this object raises SystemExit (must not kill the helper)."""

    def __reduce__(self):
        return (exit_now, ())


def exit_now():
    raise SystemExit(7)


class PrintOnUnpickle:
    """Unpickling this object prints to stdout (must not corrupt the protocol)."""

    def __init__(self, text):
        self.text = text

    def __reduce__(self):
        return (print_both, (self.text,))


def print_both(text):
    import sys

    print(text)
    sys.stdout.flush()
    os.write(1, (text + "\n").encode())
