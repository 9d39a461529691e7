"""TensorBoard event files, read back with TensorBoard's own EventAccumulator."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from dlrun.run import run

from conftest import compose_config


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    run(compose_config("trainer.max_epochs=3", "trainer.log_every_n_steps=5", "optimizer.lr=0.002"), run_dir)
    accumulator = EventAccumulator(str(run_dir / "tensorboard"))
    accumulator.Reload()
    return accumulator


def test_train_loss_every_n_steps(events):
    steps = [event.step for event in events.Scalars("train/loss")]
    assert steps == list(range(5, 3 * 20 + 1, 5))  # digits: 20 batches an epoch, 3 epochs


def test_epoch_metrics_and_learning_rate(events):
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/top5_acc", "train/lr", "epoch"} <= tags
    assert [event.value for event in events.Scalars("epoch")] == [1, 2, 3]
    assert [event.value for event in events.Scalars("train/lr")] == pytest.approx([0.002] * 3)
    losses = [event.value for event in events.Scalars("val/loss")]
    assert losses[-1] < losses[0]


def test_test_metrics_at_the_end(events):
    (accuracy,) = events.Scalars("test/acc")
    assert 0.5 < accuracy.value <= 1


def test_hparams_view_pairs_the_config_with_the_test_metrics(events):
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["optimizer.lr"].number_value == pytest.approx(0.002)
    assert hparams["model._target_"].string_value == "dlrun.models.mlp.mlp"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {info.name.tag for info in experiment.experiment.metric_infos}
    assert metric_tags == {"test/loss", "test/acc", "test/top5_acc"}
