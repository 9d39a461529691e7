"""ONNX through torch's dynamo exporter (torch.onnx.export(dynamo=True), built on torch.export) where onnxscript is
installed, else, or when it cannot export the model at the opset asked for, through the TorchScript-based one
(dynamo=False, deprecated); run in onnxruntime for the check. Either marks the batch axis dynamic; the description
names which one wrote the file, and why when it is not the dynamo one.
"""

import contextlib
import importlib.util
import logging
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
    exporter, note = _export(trained.model, batch, path, names, opset)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(inputs):
        return [torch.from_numpy(np.asarray(out)) for out in session.run(None, {INPUT_NAME: inputs.numpy()})]

    return {
        "opset": _opset(graph),
        "exporter": exporter,
        **({"note": note} if note else {}),
        "inputs": [_io(value) for value in graph.graph.input],
        "outputs": [_io(value) for value in graph.graph.output],
        "run": (f"onnxruntime {onnxruntime.__version__}", run),
    }


def _export(model, batch, path: Path, names: list[str], opset: int) -> tuple[str, str | None]:
    """The file written by the dynamo exporter where it can, else by the TorchScript-based one: which, and why."""
    import onnx

    exporter, note = None, None
    if importlib.util.find_spec("onnxscript") is not None:
        try:
            exporter = _dynamo(model, batch, path, names, opset)
        except Exception as error:  # torch.export refuses the model: any of its many error types
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            note = (
                f"the dynamo exporter failed ({type(error).__name__}: {reason[:200]}); used the TorchScript-based one"
            )
        else:
            if (written := _opset(onnx.load(str(path)))) != opset:  # it writes 18+ and converts down when it can
                exporter = None
                note = (
                    f"the dynamo exporter could not convert this model to opset {opset} (it wrote {written}; "
                    f"--opset {written} keeps it); used the TorchScript-based one"
                )
    if exporter is None:
        exporter = _torchscript_based(model, batch, path, names, opset)
    return exporter, note


def _dynamo(model, batch, path: Path, names: list[str], opset: int) -> str:
    import torch

    example = batch if len(batch) > 1 else torch.cat([batch, batch])  # torch.export fixes a batch axis of size 1
    with warnings.catch_warnings(), _quiet("torch.onnx", "onnxscript"):
        warnings.simplefilter("ignore")  # its notes on opset conversion and deprecated torch.export arguments
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    program.save(str(path))
    return f"torch.onnx.export (dynamo, torch {torch.__version__})"


@contextlib.contextmanager
def _quiet(*loggers: str):
    """The loggers' warnings held back: the dynamo exporter logs its opset conversion as a warning."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _torchscript_based(model, batch, path: Path, names: list[str], opset: int) -> str:
    import torch

    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo=True, which needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            model,
            (batch,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *names]},
            opset_version=opset,
            do_constant_folding=True,
        )
    return f"torch.onnx.export (TorchScript-based, torch {torch.__version__})"


def _opset(graph) -> int:
    return next(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx"))


def _io(value) -> dict:
    import onnx

    tensor = value.type.tensor_type
    shape = [dim.dim_param or dim.dim_value for dim in tensor.shape.dim]
    return {"name": value.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name}
