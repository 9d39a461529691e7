"""The export formats: each one's file name in <run>/export/ and its writer.

A writer(trained, batch, path, opset) writes the file and returns its description (inputs, outputs, how to load
it) with "run": the runtime's name and a function that runs the written file on inputs, for the check.
"""

from collections.abc import Callable
from dataclasses import dataclass

from dlrun.export import to_onnx, to_safetensors, to_state_dict, to_torchscript


@dataclass(frozen=True)
class Format:
    file_name: str  # the default file in <run>/export/
    write: Callable  # (trained, batch, path, opset) -> description, with "run"


FORMATS = {
    "onnx": Format("model.onnx", to_onnx.write),
    "torchscript": Format("model.torchscript.pt", to_torchscript.write),
    "state_dict": Format("model.state_dict.pt", to_state_dict.write),
    "safetensors": Format("model.safetensors", to_safetensors.write),
}
