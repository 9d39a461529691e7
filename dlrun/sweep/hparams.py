"""TensorBoard's HParams view over a sweep dir: which hyperparameters the jobs differ in, against their final metrics.

Each job's TensorBoard callback records all its hyperparameters (the flattened config, ~60 keys) and test metrics,
so `tensorboard --logdir <sweep dir>` shows every job as its own run. This adds, in the sweep dir itself, the
experiment the HParams view lists: only the keys whose values differ between jobs, marked as differing, and the
monitored and test metrics. Imports no torch (tensorboard's own protos and writer).
"""

import time
from pathlib import Path

EVENTS_SUFFIX = ".dlrun_sweep"  # events.out.tfevents.<time>.<host>.dlrun_sweep in the sweep dir
BOOKKEEPING = {"ckpt_path", "resume"}  # differ for a resumed job, without being hyperparameters


def session_hparams(job_dir: Path) -> dict:
    """{name: google.protobuf.Value} a job's TensorBoard callback recorded; {} if it recorded none yet."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    hparams = {}
    for path in sorted((job_dir / "tensorboard").glob("events.out.tfevents.*")):
        try:
            for event in EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    if value.tag == metadata.SESSION_START_INFO_TAG:
                        start = metadata.parse_session_start_info_plugin_data(value.metadata.plugin_data.content)
                        hparams = dict(start.hparams)
        except Exception:  # noqa: BLE001 - a file still being written: what was read so far
            continue
    return hparams


def write_experiment(sweep_dir: Path, job_dirs: list[Path], metrics: list[str]) -> Path | None:
    """Write the sweep's HParams experiment; None (nothing written) when no job recorded hyperparameters."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    sessions = [hparams for hparams in map(session_hparams, job_dirs) if hparams]
    if not sessions:
        return None
    names = sorted({name for hparams in sessions for name in hparams} - BOOKKEEPING)
    differing = [name for name in names if len({_key(hparams.get(name)) for hparams in sessions}) > 1]
    infos = [
        api_pb2.HParamInfo(name=name, type=_type(name, sessions), differs=True)
        for name in differing or names  # nothing differs (one job): list them all, as for a single run
    ]
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metrics],
        time_created_secs=time.time(),
    )
    content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(experiment=experiment))
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=content)])
    for old in sweep_dir.glob(f"events.out.tfevents.*{EVENTS_SUFFIX}"):
        old.unlink()
    writer = EventFileWriter(str(sweep_dir), filename_suffix=EVENTS_SUFFIX)
    writer.add_event(event_pb2.Event(summary=summary, wall_time=time.time()))
    writer.close()
    return next(sweep_dir.glob(f"events.out.tfevents.*{EVENTS_SUFFIX}"), None)


def _key(value) -> tuple:
    if value is None:
        return ("missing",)
    kind = value.WhichOneof("kind")
    return kind, getattr(value, kind)


def _type(name: str, sessions: list[dict]):
    from tensorboard.plugins.hparams import api_pb2

    kinds = {hparams[name].WhichOneof("kind") for hparams in sessions if name in hparams}
    if kinds == {"number_value"}:
        return api_pb2.DATA_TYPE_FLOAT64
    if kinds == {"bool_value"}:
        return api_pb2.DATA_TYPE_BOOL
    return api_pb2.DATA_TYPE_STRING
