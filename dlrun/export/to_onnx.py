"""ONNX through torch's TorchScript-based exporter (torch.onnx.export(dynamo=False)), run in onnxruntime for the check.

It works with the installed packages, takes a fraction of a second, and marks the batch axis dynamic through
dynamic_axes. The torch.export based exporter (dynamo=True, the default since torch 2.9) would need the onnxscript
package as well.
"""

import warnings
from pathlib import Path

from dlrun.export.check import outputs
from dlrun.export.description import INPUT_NAME, output_names


def write(trained, batch, path: Path, opset: int) -> dict:
    import numpy as np
    import onnx
    import onnxruntime
    import torch

    names = output_names(len(outputs(trained.model, batch)))
    dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *names]}
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo=True, which needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            trained.model,
            (batch,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(inputs):
        return [torch.from_numpy(np.asarray(out)) for out in session.run(None, {INPUT_NAME: inputs.numpy()})]

    return {
        "opset": opset,
        "exporter": f"torch.onnx.export (TorchScript-based, torch {torch.__version__})",
        "inputs": [_io(value) for value in graph.graph.input],
        "outputs": [_io(value) for value in graph.graph.output],
        "run": (f"onnxruntime {onnxruntime.__version__}", run),
    }


def _io(value) -> dict:
    import onnx

    tensor = value.type.tensor_type
    shape = [dim.dim_param or dim.dim_value for dim in tensor.shape.dim]
    return {"name": value.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name}
