"""Where the model and the batches live and in what precision: the device, the memory format, autocast."""

import contextlib

import torch
from torch import Tensor

from dlrun.data.module import DataModule

AUTOCAST_DTYPES = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """The torch device for trainer.device; under torchrun each process takes the GPU of its local rank."""
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    if device != "auto":
        return torch.device(device)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Placement:
    def __init__(self, device: torch.device, *, precision: str, channels_last: bool, data_on_device: bool | str):
        """trainer.precision, channels_last and data_on_device (conf/trainer/default.yaml) on a resolved device."""
        self.device = device
        self.autocast_dtype = AUTOCAST_DTYPES[str(precision)]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if not (isinstance(data_on_device, bool) or data_on_device == "auto"):
            raise ValueError(f"data_on_device must be True, False or 'auto', not {data_on_device!r}")
        self.data_on_device = data_on_device

    def put_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device, memory_format=self.memory_format)

    def put_data(self, data: DataModule) -> None:
        """The in-memory splits go to the device once, batches are then gathered there, where trainer.data_on_device
        lets them (auto: where they fit, DataModule.fits_on); otherwise each batch is copied to it."""
        if self.data_on_device is True or (self.data_on_device == "auto" and data.fits_on(self.device)):
            data.to(self.device)

    def placer(self, data: DataModule):
        """What puts a batch on the device: nothing when the splits live there already in the right layout."""
        if data.resident_on == self.device and self.memory_format is torch.contiguous_format:
            return _as_is
        return self._to_device

    def autocast(self):
        """The context a forward pass runs in: autocast to trainer.precision, or nothing at 32 bits."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _to_device(self, batch):
        return tuple(self._placed(t) for t in batch)

    def _placed(self, tensor: Tensor) -> Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        return tensor.to(memory_format=self.memory_format) if tensor.dim() == 4 else tensor


def _as_is(batch):
    return batch
