"""A hook for tests of interruption: the run pauses at a named point until a signal comes, so a test signals it at
that very moment instead of guessing with sleeps.

DLRUN_PAUSE_AT=<point>[@<n>] names the point (startup, train_step, validation, test, write:<file name>, e.g.
write:last.pt@2: the second write of a last.pt) and the n-th time it is reached (1 unless given). There the run
writes its PID to DLRUN_PAUSE_FILE and waits for the next signal it receives (at most PAUSE_LIMIT_S). A file already
there means the point was reached before: a resumed or requeued run with the same environment goes on.
"""

import os
import time
from pathlib import Path

from dlrun.signals import requests

PAUSE_LIMIT_S = 60.0  # a test that sends no signal still ends
_reached: dict[str, int] = {}  # how often this process reached each point


def point(name: str) -> None:
    wanted = os.environ.get("DLRUN_PAUSE_AT")
    if not wanted:
        return
    where, _, nth = wanted.partition("@")
    if where != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    path = Path(os.environ["DLRUN_PAUSE_FILE"])
    if _reached[name] != int(nth or 1) or path.exists():
        return
    received = requests.received
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(str(os.getpid()))
    temporary.replace(path)  # the test reads a whole PID
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while requests.received == received and time.monotonic() < deadline:
        time.sleep(0.005)
