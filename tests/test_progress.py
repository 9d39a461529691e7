"""The progress callback in a real fit: its bar is drawn between batches, after `delay`, at most
`refresh_per_second` times a second; every epoch prints its line of metrics."""

import io

import pytest
from rich.console import Console

from dlrun import build
from dlrun.callbacks.progress import Progress
from dlrun.errors import ConfigError

from conftest import compose_config, make_trainer

BATCHES = 4


def terminal_output(**settings) -> str:
    """What a 2-epoch fit shows on a terminal with a Progress(**settings)."""
    progress = Progress(**settings)
    progress.console = Console(
        file=io.StringIO(), force_terminal=True, width=160, color_system=None, quiet=settings.get("quiet", False)
    )
    cfg = compose_config()
    data = build.data(cfg)
    task = build.task(cfg, build.model(cfg, data.spec), data)
    trainer = make_trainer(max_epochs=2, limit_batches=BATCHES, log_every_n_steps=1, device="cpu", callbacks=[progress])
    trainer.fit(task, data, task.configure_optimizers(build.optimizer_factory(cfg)))
    return progress.console.file.getvalue()


def test_the_bar_shows_each_batch_when_redraws_are_not_limited():
    output = terminal_output(delay=0, refresh_per_second=1e9)
    for epoch in (1, 2):
        assert f"epoch {epoch}/2  train/loss_epoch" in output  # the epoch's line of metrics
    for done in range(1, BATCHES + 1):
        assert f"{done}/{BATCHES}" in output
    assert "━" in output and "loss " in output and "0:00:00" in output  # bar, live loss, elapsed time


def test_an_epoch_shorter_than_the_delay_prints_its_line_only():
    output = terminal_output(delay=60)
    assert "epoch 1/2  train/loss_epoch" in output and "epoch 2/2  train/loss_epoch" in output
    assert "━" not in output and f"1/{BATCHES}" not in output


def test_redraws_are_limited_to_refresh_per_second():
    output = terminal_output(delay=0, refresh_per_second=1e-6)  # the first draw, then none for 11 days
    assert f"1/{BATCHES}" in output
    assert all(f"{done}/{BATCHES}" not in output for done in range(2, BATCHES + 1))


def test_a_quiet_run_draws_nothing():
    assert terminal_output(quiet=True, delay=0, refresh_per_second=1e9) == ""


@pytest.mark.parametrize(
    ("settings", "key"),
    [({"delay": -1}, "callbacks.progress.delay = -1"), ({"refresh_per_second": 0}, "refresh_per_second = 0")],
)
def test_impossible_settings_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=key):
        Progress(**settings)
