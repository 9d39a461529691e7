"""The optional extras of pyproject.toml: packages only some features need, and the problem a feature reports when
its extra is not installed (the extra to pip install). `make install` installs every extra."""

import importlib.util

EXTRAS = {  # extra: {module: the package that installs it}; pyproject.toml's [project.optional-dependencies]
    "onnx": {"onnx": "onnx", "onnxruntime": "onnxruntime", "onnxscript": "onnxscript"},
    "optuna": {"optuna": "optuna"},
    "rl": {"gymnasium": "gymnasium"},
    "safetensors": {"safetensors": "safetensors"},
    "slurm": {"hydra_plugins.hydra_submitit_launcher": "hydra-submitit-launcher"},
}
PREFERRED = {"onnxscript"}  # modules a feature uses when installed and does without (the legacy ONNX exporter)
OPTIONS = {("hydra/launcher", "slurm"): "slurm"}  # config options whose defaults come from an extra's Hydra plugin


def missing(feature: str, extra: str) -> str | None:
    """The problem "FEATURE: needs P, not installed; type pip install 'dlrun[EXTRA]'", or None when extra is."""
    absent = [
        package
        for module, package in EXTRAS[extra].items()
        if module not in PREFERRED and importlib.util.find_spec(module) is None
    ]
    return _problem(feature, absent, extra) if absent else None


def missing_for_import(feature: str, error: BaseException) -> str | None:
    """The problem for an import that failed (error, or one that caused it) on a module of an extra, else None."""
    while error is not None:
        if isinstance(error, ModuleNotFoundError) and error.name:
            for extra, modules in EXTRAS.items():
                for module, package in modules.items():
                    if error.name == module or error.name.startswith(module + "."):
                        return _problem(feature, [package], extra)
        error = error.__cause__
    return None


def missing_for_options(chosen: list[tuple[str, str]]) -> list[str]:
    """The problems of the (group, option) pairs chosen whose extra is not installed."""
    return [
        problem
        for group, option in chosen
        if (group, option) in OPTIONS and (problem := missing(f"{group} = {option}", OPTIONS[group, option]))
    ]


def _problem(feature: str, packages: list[str], extra: str) -> str:
    return f"{feature}: needs {' and '.join(packages)}, not installed; type pip install 'dlrun[{extra}]'"
