"""`dlrun-export CKPT`: a checkpoint as ONNX, TorchScript, a plain state_dict or safetensors, checked before it is kept.

The model is rebuilt from the checkpoint's own config, loaded with its weights and put in eval mode. Each export
is run on a batch of real inputs (the test split of the run's dataset, or --inputs) and compared with the PyTorch
model; a description of the file (input and output names and shapes, opset, preprocessing, the check) is written
beside it as <file>.json.

cli.py          the command: its arguments, checked all at once before torch loads, and its exit codes
exporter.py     export(): the check batch, the writer of the format, the check, the description, what is printed
formats.py      the formats: each one's default file name and writer
to_onnx.py, to_torchscript.py, to_state_dict.py, to_safetensors.py   one writer per format: the file, and how to
                run it for the check
check.py        the written file against the PyTorch model, on the whole batch and on one input
description.py  <file>.json: where the file came from and how its inputs and outputs are read
"""

from dlrun.export.check import ExportMismatch
from dlrun.export.cli import main
from dlrun.export.exporter import export

__all__ = ["ExportMismatch", "export", "main"]
