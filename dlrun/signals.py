"""SIGINT and SIGTERM as a request to stop: the trainer finishes its step, saves, and exits.

A second signal of either kind is handled the default way: Ctrl-C twice stops at once.
"""

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """While entered, remembers the first SIGINT/SIGTERM instead of dying of it."""

    def __init__(self):
        self.signum: int | None = None  # the signal received, None while none was
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._request)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _request(self, signum: int, frame) -> None:
        self.signum = signum
        for other in STOP_SIGNALS:  # the next signal stops at once
            signal.signal(other, self._previous.get(other, signal.SIG_DFL))
