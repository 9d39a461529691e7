"""SIGINT, SIGTERM and the preemption signal (trainer.preemption_signal: SIGUSR2, the warning submitit and SLURM send
before a time limit) as a request to stop: the run finishes the step or batch at hand, saves, says how to resume and
exits.

Signals reach the whole process, so the requests are one object, `requests`: caught from start-up to the end of a
run, and looked at by every phase (start-up, training, validation, test, saving) at its safe points. A second signal
does what it did before dlrun caught it: Ctrl-C twice stops at once (KeyboardInterrupt), a second SIGTERM ends the
process, a second SIGUSR2 under submitit checkpoints and requeues the job at once.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PREEMPTION_SIGNALS = {"USR2": signal.SIGUSR2, "USR1": signal.SIGUSR1}  # trainer.preemption_signal's values, but null


def check_preemption_signal(value) -> list[str]:
    """trainer.preemption_signal's problem, if any, as validate lists them."""
    if value is None or value in PREEMPTION_SIGNALS:
        return []
    valid = "|".join([*PREEMPTION_SIGNALS, "null"])
    return [f"trainer.preemption_signal = {value}: unknown; type one of trainer.preemption_signal={valid}"]


def stop_signals(preemption_signal: str | None) -> tuple[int, ...]:
    """SIGINT, SIGTERM and the configured preemption signal (none when null)."""
    return STOP_SIGNALS + ((PREEMPTION_SIGNALS[preemption_signal],) if preemption_signal else ())


class StopRequests:
    """While caught, remembers the first stop signal instead of dying of it."""

    def __init__(self):
        self.signum: int | None = None  # the first signal received, None while none was
        self.received = 0  # signals received while caught (the pause hook waits for the next one)
        self._previous: dict[int, object] = {}  # each caught signal's handler before dlrun's

    @contextlib.contextmanager
    def caught(self, *signums: int) -> Iterator["StopRequests"]:
        """Catch signums (STOP_SIGNALS when none given) inside; nested, only those not caught yet. Leaving the
        outermost forgets the signal received."""
        if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
            yield self
            return
        outermost = not self._previous
        added = [signum for signum in dict.fromkeys(signums or STOP_SIGNALS) if signum not in self._previous]
        for signum in added:
            self._previous[signum] = signal.signal(signum, self._request)
        try:
            yield self
        finally:
            for signum in added:
                signal.signal(signum, self._previous.pop(signum))
            if outermost:
                self.signum, self.received = None, 0

    def hand_on_to_scheduler(self, signum: int) -> None:
        """Once the state is saved: a handler of signum's own that was there before dlrun (submitit's, which
        checkpoints and requeues the job) gets the signal too. Python's Ctrl-C handler does not."""
        previous = self._previous.get(signum)
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, None)

    def _request(self, signum: int, frame) -> None:
        self.received += 1
        if self.signum is None:
            self.signum = signum
            return
        previous = self._previous.get(signum, signal.SIG_DFL)  # a second signal: what it did before dlrun
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)


requests = StopRequests()  # the process's one
