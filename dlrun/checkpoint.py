"""Checkpoint files: written atomically, read with weights_only=True (a loaded file never runs code)."""

import copy
import io
import pickle
import pickletools
import re
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from dlrun import atomic
from dlrun.errors import ConfigError


def serialize(state: dict) -> bytes:
    """The bytes torch.save writes: a snapshot, unaffected by later changes to the state's tensors."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


IMMUTABLE = {str, int, float, bool, type(None)}  # types of values a snapshot can share with the state
CPU = torch.device("cpu")


def snapshot(state):
    """A copy of a state that later training does not change: tensors copied to the CPU, containers rebuilt, other
    values deep-copied. (Tensors sharing storage, tied weights, become separate copies.)"""
    kind = type(state)
    if kind in IMMUTABLE or (kind is tuple and set(map(type, state)) <= IMMUTABLE):
        return state  # nothing to change in it (Python's RNG state is a tuple of 625 ints)
    if isinstance(state, torch.Tensor):
        return state.detach().clone() if state.device == CPU else state.detach().to(CPU)
    if isinstance(state, dict):
        return {key: snapshot(value) for key, value in state.items()}
    if isinstance(state, list | tuple):
        values = [snapshot(value) for value in state]
        return kind(*values) if hasattr(state, "_fields") else kind(values)  # namedtuples take fields
    return copy.deepcopy(state)


class BackgroundWriter:
    """Writes bytes to files atomically on one background thread, in order: training goes on while the disk syncs.

    At most one write (of one or more files) is in flight; wait() returns once every write is on disk and raises a
    failed write's error.
    """

    def __init__(self):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlrun-checkpoint")
        self._pending: Future | None = None

    def write(self, files: dict[Path, bytes]) -> None:
        self.wait()
        self._pending = self._executor.submit(write_files, files)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


def write_files(files: dict[Path, bytes]) -> None:
    """Each file atomically (dlrun.atomic): a file is never half-written. A write that fails (a full disk) is a
    ConfigError naming the file, which stays as it was."""
    for path, contents in files.items():
        try:
            atomic.write(path, contents)
        except OSError as error:
            raise ConfigError(
                f"{path}: cannot be written ({error.strerror}), so the run stopped; {path.name} stays as it was "
                "before; free space on that disk and resume with resume=auto, or give a hydra.run.dir elsewhere"
            ) from error


ZIP_MAGIC = b"PK\x03\x04"  # how every file torch.save writes begins (a zip archive)
# How a file of torch's format before 1.6 (torch.save(..., _use_new_zipfile_serialization=False)) begins: its magic
# number, pickled with protocol 2. torch.load reads those too.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
PICKLE_OPCODES = {ord(opcode.code) for opcode in pickletools.opcodes}  # the bytes a pickle is made of
ANOTHER = "type the path of another checkpoint, e.g. the run's checkpoints/best.pt"


def load(path: str | Path, *, key: str = "ckpt_path") -> dict:
    """Read a checkpoint onto the CPU; a missing, empty, foreign, corrupt or code-carrying file is a ConfigError
    naming key."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key} = {path}: no such file; type the path of a last.pt or best.pt")
    state = read(path, key=key, another=ANOTHER)
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"{key} = {path}: not a dlrun checkpoint (no model state); type the path of a last.pt")
    return state


def read(path: Path, *, key: str, another: str):
    """What torch.save wrote to the file, read with weights_only=True; a file that is empty, of another format,
    corrupt or holding objects beyond tensors and plain containers is a ConfigError "key = path: ...; another"."""
    with open(path, "rb") as file:
        start = file.read(len(LEGACY_MAGIC))
    if not start:
        raise ConfigError(f"{key} = {path}: an empty file (0 bytes), truncated or never written; {another}")
    if not start.startswith(ZIP_MAGIC) and start != LEGACY_MAGIC:
        raise ConfigError(
            f"{key} = {path}: not a torch checkpoint (torch.save writes a zip archive): a file of another format, "
            f"or corrupt; {another}"
        )
    try:
        with warnings.catch_warnings():  # torch warns of the pickle protocol of a file it is about to refuse
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_content(error)
        if _well_formed(refused):
            raise ConfigError(
                f"{key} = {path}: refused, the file holds objects beyond tensors and plain containers ({refused}); "
                "load only checkpoints written by dlrun"
            ) from error
        raise ConfigError(
            f"{key} = {path}: not a readable checkpoint, truncated or corrupt ({refused}); {another}"
        ) from error
    except Exception as error:  # torch.load fails on a damaged file with many exception types
        raise ConfigError(
            f"{key} = {path}: not a readable checkpoint, truncated or corrupt "
            f"({_first_sentence(str(error))}); {another}"
        ) from error


def _well_formed(refused: str) -> bool:
    """Whether torch refused a pickle for what it holds (a global, an opcode of the pickle format it does not read)
    rather than for bytes that are no pickle at all (a corrupt file)."""
    operand = re.fullmatch(r"Unsupported operand (\d+)", refused)
    return refused.startswith("Unsupported global") or bool(operand and int(operand[1]) in PICKLE_OPCODES)


def _refused_content(error: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused ("Unsupported global: ...", "Unsupported operand 164": a corrupt
    pickle), without its advice to load the file unsafely."""
    _, found, detail = str(error).partition("WeightsUnpickler error:")
    return _first_sentence(detail if found and detail.strip() else str(error))


def _first_sentence(text: str) -> str:
    """The cause in torch's message, not the advice after it, nor the C++ source line ("[enforce fail at ...]")."""
    text = re.sub(r"\[enforce fail at [^\]]*\][\s.]*", "", text)
    line = next((line.strip() for line in text.splitlines() if line.strip()), "no detail")
    return line.split(". ")[0].rstrip(".")


def load_weights(model: torch.nn.Module, weights: dict, *, problem: str, hint: str) -> None:
    """model.load_state_dict(weights); a mismatch is a ConfigError "problem (the keys that differ); hint"."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        differences = "; ".join(line.strip() for line in str(error).splitlines()[1:4])
        raise ConfigError(f"{problem} ({differences}); {hint}") from error
