"""dlrun-export on checkpoints of real runs: ONNX (dynamic batch, onnxruntime; dynamo and TorchScript-based exporters),
TorchScript, state_dict, safetensors, bad input."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import hydra.utils
import numpy as np
import onnx
import onnxruntime
import pytest
import safetensors
import safetensors.torch
import sklearn.datasets
import torch
from omegaconf import OmegaConf

from dlrun import build
from dlrun.export import ExportMismatch, export, main
from dlrun.inputs import load_trained
from dlrun.run import run

from conftest import compose_config

EXPORT = str(Path(sys.executable).with_name("dlrun-export"))
TOLERANCE = 1e-4
# A CNN on digits images (batch norm, pooling), and MLPs for a binary logit and a regression value.
RUNS = {
    "digits": ["dataset=digits", "model=cnn"],
    "binary": ["dataset=breast_cancer", "loss=bce"],
    "regression": ["experiment=diabetes"],
}
SHAPES = {"digits": ([1, 8, 8], [10]), "binary": ([30], [1]), "regression": ([10], [1])}

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*:FutureWarning")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """best.pt of one tiny real run per problem."""
    root = tmp_path_factory.mktemp("runs")
    tiny = ["trainer.max_epochs=1", "trainer.limit_batches=3", "callbacks.tensorboard=null"]
    for name, overrides in RUNS.items():
        run(compose_config(*overrides, *tiny), root / name)
    return {name: root / name / "checkpoints" / "best.pt" for name in RUNS}


def real_inputs(checkpoint: Path, count: int) -> torch.Tensor:
    """The first test inputs of the checkpoint's dataset, standardised as in training."""
    config = OmegaConf.create(torch.load(checkpoint, weights_only=True)["config"])
    return build.data(config).test[0][:count]


def torch_outputs(checkpoint: Path, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return load_trained(checkpoint).model(inputs).numpy()


def run_export(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"COLUMNS": "200"}
    return subprocess.run([EXPORT, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def onnx_files(checkpoints) -> dict[str, Path]:
    """model.onnx of each run, exported once (the dynamo exporter takes a second or two a model)."""
    return {problem: export(checkpoint, quiet=True) for problem, checkpoint in checkpoints.items()}


@pytest.mark.parametrize("problem", RUNS)
def test_onnx_runs_in_onnxruntime_with_any_batch_size_and_matches_torch(checkpoints, onnx_files, problem):
    path = onnx_files[problem]
    assert path == checkpoints[problem].parent.parent / "export" / "model.onnx"
    onnx.checker.check_model(onnx.load(str(path)))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch_size in (1, 7):
        inputs = real_inputs(checkpoints[problem], batch_size)
        (got,) = session.run(None, {"input": inputs.numpy()})
        expected = torch_outputs(checkpoints[problem], inputs)
        assert got.shape == expected.shape == (batch_size, *SHAPES[problem][1])
        assert np.abs(got - expected).max() < TOLERANCE


@pytest.mark.parametrize("problem", RUNS)
def test_the_onnx_description_names_opset_inputs_outputs_and_the_check(checkpoints, onnx_files, problem):
    description = json.loads(onnx_files[problem].with_name("model.onnx.json").read_text())
    in_shape, out_shape = SHAPES[problem]
    assert description["opset"] == 17
    assert description["exporter"].startswith("torch.onnx.export (dynamo") and "note" not in description
    assert description["inputs"] == [{"name": "input", "shape": ["batch", *in_shape], "dtype": "float32"}]
    assert description["outputs"] == [{"name": "output", "shape": ["batch", *out_shape], "dtype": "float32"}]
    assert description["check"]["runtime"].startswith("onnxruntime")
    assert description["check"]["batch_sizes"] == [16, 1]
    assert 0 <= description["check"]["max_abs_diff"] < TOLERANCE
    assert description["problem"] == {"digits": "classification"}.get(problem, problem)
    assert description["checkpoint"] == str(checkpoints[problem].resolve())
    # What a user needs to feed the file: the training standardisation and, for classes, their names.
    assert np.asarray(description["preprocessing"]["input_mean"]).shape == (
        (1, 1, 1) if problem == "digits" else (in_shape[0],)
    )
    if problem == "binary":
        assert description["class_names"] == ["malignant", "benign"]
    if problem == "regression":
        assert description["preprocessing"]["target_std"] is not None


def test_torchscript_loads_with_torch_jit_and_matches(checkpoints):
    path = export(checkpoints["digits"], format_name="torchscript", quiet=True)
    assert path.name == "model.torchscript.pt" and path.with_name("model.torchscript.pt.json").is_file()
    loaded = torch.jit.load(str(path))
    for batch_size in (1, 7):
        inputs = real_inputs(checkpoints["digits"], batch_size)
        with torch.no_grad():
            got = loaded(inputs).numpy()
        assert np.abs(got - torch_outputs(checkpoints["digits"], inputs)).max() < TOLERANCE


@pytest.mark.parametrize("problem", ["digits", "regression"])
def test_state_dict_loads_into_a_freshly_built_model(checkpoints, problem):
    path = export(checkpoints[problem], format_name="state_dict", quiet=True)
    description = json.loads(path.with_name(path.name + ".json").read_text())
    model = hydra.utils.instantiate(description["model_config"])  # the model node of the run's config
    model.load_state_dict(torch.load(path, weights_only=True))
    model.eval()
    inputs = real_inputs(checkpoints[problem], 7)
    with torch.no_grad():
        assert torch.equal(model(inputs), torch.from_numpy(torch_outputs(checkpoints[problem], inputs)))


@pytest.mark.parametrize("problem", ["digits", "regression"])
def test_safetensors_load_into_a_freshly_built_model_and_carry_their_metadata(checkpoints, problem):
    path = export(checkpoints[problem], format_name="safetensors", quiet=True)
    assert path.name == "model.safetensors"
    description = json.loads(path.with_name("model.safetensors.json").read_text())
    model = hydra.utils.instantiate(description["model_config"]).eval()
    model.load_state_dict(safetensors.torch.load_file(path))
    inputs = real_inputs(checkpoints[problem], 7)
    with torch.no_grad():
        assert torch.equal(model(inputs), torch.from_numpy(torch_outputs(checkpoints[problem], inputs)))
    with safetensors.safe_open(path, framework="pt") as file:
        metadata = file.metadata()
    assert metadata == description["metadata"]
    assert metadata["input_shape"] == str(["batch", *SHAPES[problem][0]]) and metadata["dlrun_version"]
    assert description["check"]["runtime"].startswith("a fresh model") and description["check"]["max_abs_diff"] == 0


def test_the_command_writes_safetensors(checkpoints, tmp_path):
    result = run_export(str(checkpoints["binary"]), "--format", "safetensors", "--output", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "as safetensors" in result.stdout and "max abs difference 0 " in result.stdout
    weights = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert weights.keys() == load_trained(checkpoints["binary"]).model.state_dict().keys()


def test_without_onnxscript_the_torchscript_based_exporter_writes_the_onnx(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    path = export(checkpoints["binary"], output=tmp_path, quiet=True)
    description = json.loads(path.with_name("model.onnx.json").read_text())
    assert description["exporter"].startswith("torch.onnx.export (TorchScript-based")
    assert description["inputs"][0]["shape"] == ["batch", 30] and description["check"]["max_abs_diff"] < TOLERANCE


def test_a_model_the_dynamo_exporter_refuses_falls_back_with_a_note(checkpoints, tmp_path, monkeypatch, capsys):
    real_export = torch.onnx.export

    def refuse_dynamo(*args, dynamo, **kwargs):
        if dynamo:
            raise RuntimeError("data-dependent control flow\nmore lines")
        return real_export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", refuse_dynamo)
    path = export(checkpoints["binary"], output=tmp_path)
    description = json.loads(path.with_name("model.onnx.json").read_text())
    assert description["exporter"].startswith("torch.onnx.export (TorchScript-based")
    assert description["note"].startswith("the dynamo exporter failed (RuntimeError: data-dependent control flow")
    printed = " ".join(capsys.readouterr().out.split())
    assert "note: the dynamo exporter failed" in printed and "used the TorchScript-based one" in printed


def test_an_opset_the_dynamo_exporter_cannot_write_is_written_by_the_torchscript_based_one(checkpoints, tmp_path):
    path = export(checkpoints["digits"], output=tmp_path, opset=9, quiet=True)  # dynamo writes 18+, converts down
    description = json.loads(path.with_name("model.onnx.json").read_text())
    assert description["opset"] == 9 and onnx.load(str(path)).opset_import[0].version == 9
    assert description["exporter"].startswith("torch.onnx.export (TorchScript-based")
    assert "could not convert this model to opset 9 (it wrote 18; --opset 18 keeps it)" in description["note"]


@pytest.mark.usefixtures("wide_terminal")
def test_safetensors_without_its_extra_exits_2(checkpoints, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if not installed
    code, message = run_main(str(checkpoints["binary"]), "--format", "safetensors", capsys=capsys)
    assert code == 2
    assert (
        "--format = safetensors: needs safetensors, not installed; type pip install 'dlrun[safetensors]', "
        "or --format state_dict"
    ) in message


def test_output_may_name_a_file_or_a_folder(checkpoints, tmp_path):
    assert export(checkpoints["binary"], output=tmp_path / "deploy" / "bc.onnx", quiet=True).is_file()
    assert (tmp_path / "deploy" / "bc.onnx.json").is_file()
    (tmp_path / "folder").mkdir()
    path = export(checkpoints["binary"], format_name="torchscript", output=tmp_path / "folder", quiet=True)
    assert path == tmp_path / "folder" / "model.torchscript.pt"


def test_the_check_may_use_given_raw_inputs(checkpoints, tmp_path):
    digits = sklearn.datasets.load_digits()
    np.save(tmp_path / "samples.npy", digits.data[:5].reshape(5, 1, 8, 8))
    path = export(checkpoints["digits"], output=tmp_path, inputs=[str(tmp_path / "samples.npy")], quiet=True)
    check = json.loads(path.with_name("model.onnx.json").read_text())["check"]
    assert check["inputs"] == f"5 inputs from {tmp_path / 'samples.npy'}"
    assert check["batch_sizes"] == [5, 1] and check["max_abs_diff"] < TOLERANCE


def test_an_export_that_disagrees_with_the_model_is_refused_and_removed(checkpoints, tmp_path, monkeypatch):
    real_run = onnxruntime.InferenceSession.run

    def off_by_a_little(session, *args, **kwargs):
        return [output + 1e-3 for output in real_run(session, *args, **kwargs)]

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", off_by_a_little)
    with pytest.raises(ExportMismatch, match=r"max abs difference 0\.001 > tolerance 0\.0001"):
        export(checkpoints["binary"], output=tmp_path / "wrong.onnx", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_the_command_prints_the_difference_and_writes_beside_the_checkpoint(checkpoints, tmp_path):
    result = run_export(str(checkpoints["regression"]), "--format", "onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "onnxruntime" in result.stdout and "max abs difference" in result.stdout
    assert "as onnx by torch.onnx.export (dynamo" in " ".join(result.stdout.split())
    assert 'opset 17, input "input" [batch, 10]; output "output" [batch, 1]' in result.stdout
    assert (checkpoints["regression"].parent.parent / "export" / "model.onnx.json").is_file()
    assert list(tmp_path.iterdir()) == []


def run_main(*args: str, capsys) -> tuple[int, str]:
    """dlrun.export.main in this process (what the console script calls): its exit code and stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code, " ".join(capsys.readouterr().err.replace("│", " ").split())


# Mistakes caught before torch loads, through the installed script; those found by reading files, in-process.
BAD_ARGUMENTS = {
    "missing checkpoint": (["nowhere/best.pt"], ["CKPT = nowhere/best.pt: no such file", "best.pt"]),
    "unknown format": (["{digits}", "--format", "onx"], ["--format = onx: unknown format; type --format onnx"]),
    "opset out of range": (["{digits}", "--opset", "30"], ["--opset = 30", "type --opset 17"]),
    "missing inputs file": (["{digits}", "--inputs", "gone.npy"], ["--inputs = gone.npy: no such file or folder"]),
}
BAD_FILES = {
    "a plain state_dict": (["{model_pt}"], ["CKPT = ", "not a dlrun checkpoint"]),
    "an empty checkpoint": (["{empty}"], ["CKPT = {empty}: an empty file (0 bytes), truncated or never written"]),
    "random bytes": (["{random_bytes}"], ["CKPT = {random_bytes}: not a torch checkpoint"]),
    "inputs of the wrong shape": (
        ["{digits}", "--inputs", "{wrong_npy}"],
        ["--inputs = ", "shape [3, 64] does not fit the model", "[N, 1, 8, 8]"],
    ),
}


def bad_paths(checkpoints, tmp_path) -> dict[str, Path]:
    np.save(tmp_path / "wrong.npy", np.zeros((3, 64), dtype=np.float32))
    (tmp_path / "empty.pt").touch()
    (tmp_path / "random.pt").write_bytes(random.Random(0).randbytes(5000))
    return {
        "empty": tmp_path / "empty.pt",
        "random_bytes": tmp_path / "random.pt",
        "digits": checkpoints["digits"],
        "model_pt": checkpoints["digits"].parent.parent / "model.pt",
        "wrong_npy": tmp_path / "wrong.npy",
    }


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_exit_2_with_the_argument_named(checkpoints, tmp_path, case):
    args, expected = BAD_ARGUMENTS[case]
    result = run_export(*(arg.format(**bad_paths(checkpoints, tmp_path)) for arg in args), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "bad configuration" in result.stderr and "Traceback" not in result.stderr
    message = " ".join(result.stderr.replace("│", " ").split())
    for text in expected:
        assert text in message, message


@pytest.mark.usefixtures("wide_terminal")
@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_exit_2_with_the_argument_named(checkpoints, tmp_path, case, capsys):
    args, expected = BAD_FILES[case]
    paths = bad_paths(checkpoints, tmp_path)
    code, message = run_main(*(arg.format(**paths) for arg in args), capsys=capsys)
    assert code == 2
    for text in expected:
        assert text.format(**paths) in message, message


@pytest.mark.parametrize("format_name", ["onnx", "torchscript", "safetensors"])
def test_a_text_model_exports_with_token_indices_as_its_input(tmp_path, format_name):
    """The check batch keeps a text's token indices whole (an embedding takes no floats)."""
    overrides = ["experiment=text", "trainer.max_epochs=1", "trainer.limit_batches=1", "callbacks.tensorboard=null"]
    run(compose_config(*overrides), tmp_path / "run")
    path = export(tmp_path / "run" / "checkpoints" / "best.pt", format_name=format_name, quiet=True)
    description = json.loads(Path(f"{path}.json").read_text())
    assert description["inputs"][0]["dtype"] == "int64"
    assert description["check"]["max_abs_diff"] <= TOLERANCE
