"""An epoch's training metrics, summed on the device: no host sync per step, a few operations per log interval."""

import torch
from torch import Tensor

from dlrun import distributed
from dlrun.tasks.base import Task

TRAINING_OUTPUTS = ("output", "target")  # what a training step returns for task.training_metrics, not as metrics
KEPT_STEPS = 32  # at most this many steps' metrics and outputs wait on the device to be summed (bounds their memory)


class EpochSums:
    def __init__(self, task: Task, device: torch.device):
        self.task, self.device = task, device
        self.totals: dict[str, Tensor] = {}  # the epoch's metric sums, on the device
        self.counts: dict[str, int] = {}  # what each sum is divided by: batches, or what training_metrics counted
        self.pending: list[dict] = []  # the steps not yet in totals: they are added once per read (log interval)

    def add(self, step: dict) -> None:
        """A training step's return: its metrics, and its "output" and "target" for task.training_metrics."""
        self.pending.append(step)
        if len(self.pending) == KEPT_STEPS:
            self._add_pending()

    def read(self) -> dict[str, float]:
        """The sums on the host, in one read. Under torchrun their mean over the ranks: every rank then takes the
        same decision on a NaN (one rank stopping alone would leave the others waiting in a collective)."""
        self._add_pending()
        if not self.totals:
            return {}
        sums = distributed.mean_across_ranks(torch.stack(list(self.totals.values())))
        return dict(zip(self.totals, sums.tolist(), strict=True))

    def means(self, sums: dict[str, float]) -> dict[str, float]:
        """The epoch's mean of each metric, from the sums read()."""
        return {name: total / self.counts[name] for name, total in sums.items()}

    def state_dict(self) -> dict:
        """The sums so far, for a mid-epoch checkpoint (tensors and plain containers). The steps not summed yet keep
        their per-batch metrics, summed after a resume in the same groups as by a run never stopped (the same float
        sums); their outputs go into task.training_metrics' counts now (whole numbers: any grouping sums alike)."""
        self._add_outputs()
        pending = [{name: _detached(value) for name, value in step.items()} for step in self.pending]
        return {"totals": dict(self.totals), "counts": dict(self.counts), "pending": pending}

    def load_state_dict(self, state: dict) -> None:
        self.totals = {name: total.to(self.device) for name, total in state["totals"].items()}
        self.counts = dict(state["counts"])
        self.pending = [
            {name: value.to(self.device) if isinstance(value, Tensor) else value for name, value in step.items()}
            for step in state["pending"]
        ]

    @torch.no_grad()
    def _add_outputs(self) -> None:
        """The pending steps' outputs and targets into task.training_metrics' sums; the steps keep their metrics."""
        kept = [(step.pop("output"), step.pop("target")) for step in self.pending if "output" in step]
        if kept:
            outputs, targets = zip(*kept, strict=True)
            self._add(self.task.training_metrics(torch.cat(outputs), torch.cat(targets)))

    def _add(self, sums: dict[str, tuple[Tensor, int]]) -> None:
        for name, (total, count) in sums.items():
            self.totals[name] = self.totals[name] + total if name in self.totals else total.float()
            self.counts[name] = self.counts.get(name, 0) + count

    @torch.no_grad()
    def _add_pending(self) -> None:
        """Add the pending steps' metrics to the sums, and forget the steps: a few operations per log interval (or
        KEPT_STEPS steps) instead of some per step. A step's "output" and "target" go to task.training_metrics
        together; its other values are per-batch metrics."""
        steps = self.pending
        if not steps:
            return
        sums: dict[str, tuple[Tensor, int]] = {}
        for name in dict.fromkeys(name for step in steps for name in step if name not in TRAINING_OUTPUTS):
            values = [step[name] for step in steps if name in step]
            values = torch.stack(values) if isinstance(values[0], Tensor) else torch.tensor(values)
            sums[name] = (values.to(self.device, torch.float32).sum(), len(values))  # bf16 would round the sum
        self._add(sums)
        self._add_outputs()
        steps.clear()


def _detached(value):
    return value.detach() if isinstance(value, Tensor) else value
