"""A hook for tests of interruption: the run pauses at named points until a signal comes, so that a test signals it
at that very moment instead of guessing with sleeps.

DLRUN_PAUSE_AT=<point>[@<n>][,<point>[@<n>]...] names the points (startup, train_step, validation, test,
write:<file name>; write:last.pt@2 is the second write of a last.pt) and the n-th time each is reached (1 unless
given). At the k-th point listed the run writes its PID to DLRUN_PAUSE_FILE (with ".k" appended from the second on)
and waits for the next signal it receives, at most PAUSE_LIMIT_S. A file already there means the point was reached
before: a resumed or requeued run with the same environment goes on.
"""

import os
import time
from pathlib import Path

from dlrun.signals import requests

PAUSE_LIMIT_S = 120.0  # a test that sends no signal still ends
_reached: dict[str, int] = {}  # how often this process reached each point


def point(name: str) -> None:
    wanted = os.environ.get("DLRUN_PAUSE_AT")
    if not wanted:
        return
    _reached[name] = _reached.get(name, 0) + 1
    for index, listed in enumerate(wanted.split(","), start=1):
        where, _, nth = listed.partition("@")
        if where == name and _reached[name] == int(nth or 1):
            _pause(Path(os.environ["DLRUN_PAUSE_FILE"] + (f".{index}" if index > 1 else "")))


def _pause(path: Path) -> None:
    if path.exists():
        return
    received = requests.received
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(str(os.getpid()))
    temporary.replace(path)  # the test reads a whole PID
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while requests.received == received and time.monotonic() < deadline:
        time.sleep(0.005)
