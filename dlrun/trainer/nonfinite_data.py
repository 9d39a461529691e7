"""Whether the training data hold NaN or infinite values: read only once the loss has become NaN or infinite, so that
the message names the data rather than the learning rate.

Splits held in memory are checked whole; a streamed split, in the batches the epoch has read so far (at most
STREAMED_BATCHES of them: reading them again costs disk time).
"""

import itertools

import torch
from torch import Tensor

from dlrun.data.module import DataModule

STREAMED_BATCHES = 100  # the most batches of a streamed split read again to look for NaN or infinite values


def nonfinite_values(data: DataModule, epoch: int, batches_done: int) -> str | None:
    """'the targets of 12 of the 200 training samples; the inputs of 3, in input column 4', or None when the data
    looked at are finite."""
    inputs, targets, looked_at = _training_values(data, epoch, batches_done)
    found = []
    for what, values in (("targets", targets), ("inputs", inputs)):
        bad = _nonfinite_samples(values)
        if bad is not None and bad.any():
            columns = _nonfinite_columns(values) if what == "inputs" else ""
            found.append(f"the {what} of {int(bad.sum())}{' of the ' + looked_at if not found else ''}{columns}")
    return "; ".join(found) or None


def _training_values(data: DataModule, epoch: int, batches_done: int) -> tuple[Tensor, Tensor, str]:
    if not data.streamed:
        inputs, targets = data.train
        return inputs, targets, f"{len(targets)} training samples"
    read = min(max(batches_done, 1), STREAMED_BATCHES)
    batches = list(itertools.islice(data.batches("train", epoch), read))
    inputs, targets = (torch.cat([batch[part] for batch in batches]) for part in (0, 1))
    return inputs, targets, f"{len(targets)} training samples of the epoch's first {len(batches)} batches"


def _nonfinite_samples(values: Tensor) -> Tensor | None:
    """Per sample, whether any of its values is NaN or infinite; None for values that cannot be (class indices)."""
    if not values.is_floating_point() or not len(values):
        return None
    return ~torch.isfinite(values.reshape(len(values), -1)).all(dim=1)


def _nonfinite_columns(inputs: Tensor) -> str:
    """', in input columns 0, 4, counted from 0' for a table's rows (one vector per sample), else nothing."""
    if inputs.dim() != 2:
        return ""
    columns = (~torch.isfinite(inputs)).any(dim=0).nonzero().flatten().tolist()
    shown = ", ".join(map(str, columns[:10])) + (", ..." if len(columns) > 10 else "")
    return f", in input column{'s' if len(columns) > 1 else ''} {shown}, counted from 0"
