"""provenance.json in every run dir: the code, packages, machine and data a run used, to tell two runs apart later.

Written once at the start of a run, by rank 0 (dlrun.run): the git commit of the working dir and, when its tracked
files have uncommitted changes, their `git diff HEAD` in provenance.diff (nothing about git outside a repo); package
versions; Python; the device and the CPU and GPU counts; a fingerprint of the dataset's files, a hash over their
names, sizes and modification times that never reads their bytes. dlrun-summary lists the keys in which the runs
it shows differ (differences). Imports no torch until a record is written.
"""

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import socket
import subprocess
from pathlib import Path

from dlrun import atomic

PROVENANCE_FILE = "provenance.json"
DIFF_FILE = "provenance.diff"
PACKAGES = ("dlrun", "torch", "torchvision", "hydra-core", "omegaconf", "numpy", "scikit-learn", "tensorboard", "rich")
MAX_STATS = 100_000  # files whose size and mtime the fingerprint takes; past them, only the names (huge folders)
GIT_TIMEOUT_S = 10


def write(run_dir: str | Path, *, dataset: dict, device: str) -> dict:
    """Write run_dir/provenance.json (and provenance.diff in a dirty git repo); returns the record."""
    run_dir = Path(run_dir)
    record = {
        "git": git_state(Path.cwd(), run_dir),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        **machine(device),
        "dataset": fingerprint(dataset_files(dataset)),
    }
    atomic.write(run_dir / PROVENANCE_FILE, json.dumps(record, indent=2) + "\n")
    return record


def read(run_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return None


def git_state(cwd: Path, run_dir: Path) -> dict | None:
    """The commit of the git repo holding cwd, and whether its tracked files changed since; None outside a repo (or
    without git). A dirty repo's `git diff HEAD` goes to run_dir/provenance.diff."""
    root = _git(cwd, "rev-parse", "--show-toplevel")
    if root is None:
        return None
    commit = _git(cwd, "rev-parse", "HEAD")  # None in a repo without commits
    diff = _git(cwd, "diff", "HEAD") if commit is not None else _git(cwd, "diff")
    dirty = bool(diff)
    if dirty:
        atomic.write(run_dir / DIFF_FILE, diff)
    return {
        "root": root.strip(),
        "commit": commit.strip() if commit else None,
        "branch": (_git(cwd, "rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None,
        "dirty": dirty,
        "diff": DIFF_FILE if dirty else None,
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if dirty else None,
    }


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine(device: str) -> dict:
    import torch

    device = torch.device(device)
    name = torch.cuda.get_device_name(device.index or 0) if device.type == "cuda" else _cpu_name()
    return {
        "device": str(device),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpu_count": torch.cuda.device_count(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def dataset_files(dataset: dict) -> list[Path]:
    """The files the dataset reads: at its root or path when it has one; an embedded dataset's files inside
    scikit-learn; the file its loader ships (its module's SHIPPED) when no path is given; [] for none
    (an environment)."""
    given = [dataset[key] for key in ("root", "path") if dataset.get(key)]
    if given:
        return [Path(str(path)).expanduser() for path in given]
    module = str(dataset.get("_target_", "")).rpartition(".")[0]
    if module == "dlrun.data.embedded":
        sklearn = importlib.util.find_spec("sklearn")
        base = Path(sklearn.origin).parent / "datasets" if sklearn and sklearn.origin else None
        name = dataset.get("name")
        return sorted(path for folder in ("data", "descr") for path in (base / folder).glob(f"{name}*")) if base else []
    try:
        shipped = getattr(importlib.import_module(module), "SHIPPED", None) if module else None
    except ImportError:
        return []
    return [Path(shipped)] if shipped else []


def fingerprint(paths: list[Path]) -> dict:
    """A hash over the names, sizes and mtimes of the files at paths (folders walked in sorted order): cheap, and
    it changes when a file is added, removed, renamed, resized or rewritten."""
    digest = hashlib.sha256()
    files = size = 0
    for path in paths:
        for name, stat in _entries(path, MAX_STATS - files):
            files += 1
            size += stat.st_size if stat else 0
            digest.update(f"{name}\t{stat.st_size if stat else ''}\t{stat.st_mtime_ns if stat else ''}\n".encode())
    return {
        "paths": [str(path) for path in paths],
        "files": files,
        "bytes": size,
        "sha256": digest.hexdigest()[:16] if paths else None,
    }


def _entries(path: Path, stats_left: int):
    """(name relative to path, os.stat_result or None) of each file at path; a missing path is one entry
    (name, None), and past stats_left files only the names are taken."""
    if path.is_file():
        yield path.name, path.stat()
        return
    if not path.is_dir():
        yield str(path), None
        return
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            full = Path(folder) / name
            yield str(full.relative_to(path)), full.stat() if stats_left > 0 else None
            stats_left -= 1


def differences(records: dict[str, dict]) -> dict[str, dict[str, list[str]]]:
    """{key: {value: [run labels]}} for each key (dotted, e.g. packages.torch) whose value differs between the
    records of runs labelled so; {} when they all agree."""
    flat = {label: _flatten(record) for label, record in records.items()}
    keys = sorted({key for values in flat.values() for key in values})
    found = {}
    for key in keys:
        by_value: dict[str, list[str]] = {}
        for label, values in flat.items():
            by_value.setdefault(json.dumps(values.get(key)), []).append(label)
        if len(by_value) > 1:
            found[key] = by_value
    return found


def _flatten(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
