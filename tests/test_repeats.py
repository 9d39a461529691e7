"""Repeats with the real `dlrun -m`: jobs that differ only in seed are grouped, their metrics' mean and std in
summary.csv, summary.json and the table; repeats=N sweeps N seeds per configuration."""

import json
import statistics

import pytest
from test_sweep_helpers import finished_sweep, one_line, only_sweep_dir, summary_rows

from dlrun.sweep import cli
from dlrun.sweep.record import read_metrics

from conftest import run_cli


@pytest.fixture(scope="module")
def seeds_by_optimizers(tmp_path_factory):
    """2 seeds x 2 optimizers on digits: 4 real jobs."""
    return finished_sweep(tmp_path_factory.mktemp("repeats"), "seed=0,1", "optimizer=adam,sgd")


def test_summary_csv_has_the_mean_and_std_of_each_configuration_over_its_seeds(seeds_by_optimizers):
    _, sweep_dir = seeds_by_optimizers
    rows = summary_rows(sweep_dir)
    jobs, means = rows[:4], rows[4:]
    assert [row["job"] for row in jobs] == ["0", "1", "2", "3"] and [row["job"] for row in means] == ["mean", "mean"]
    assert [(row["config"], row["optimizer"], row["seed"], row["n"]) for row in means] == [
        ("0", "adam", "0 1", "2"),
        ("1", "sgd", "0 1", "2"),
    ]
    for mean in means:
        members = [row for row in jobs if row["optimizer"] == mean["optimizer"]]
        assert {row["config"] for row in members} == {mean["config"]} and len(members) == 2
        own = [read_metrics(sweep_dir / row["dir"]) for row in members]
        assert set(own[0]) >= {"val/loss", "test/acc", "test/loss"}
        for name in own[0]:
            values = [metrics[name] for metrics in own]
            assert float(mean[name]) == pytest.approx(statistics.fmean(values), rel=1e-12), name
            assert float(mean[f"{name} std"]) == pytest.approx(statistics.stdev(values), rel=1e-12), name
        assert float(mean["value"]) == pytest.approx(statistics.fmean(metrics["val/loss"] for metrics in own))
        assert mean["status"] == "2 completed" and "seed=" not in mean["overrides"]
    assert [row["best"] for row in means].count("True") == 1

    data = json.loads((sweep_dir / "summary.json").read_text())
    assert [(entry["params"], entry["jobs"], entry["n"]) for entry in data["repeats"]] == [
        ({"optimizer": "adam"}, [0, 2], 2),
        ({"optimizer": "sgd"}, [1, 3], 2),
    ]
    assert data["repeats"][0]["metrics"]["test/acc"]["mean"] == pytest.approx(float(means[0]["test/acc"]))


def test_the_sweep_and_dlrun_summary_show_mean_plus_minus_std_per_configuration(
    seeds_by_optimizers, capsys, monkeypatch
):
    result, sweep_dir = seeds_by_optimizers
    shown = one_line(result.stdout)
    assert "mean ± std over the seeds" in shown
    rows = summary_rows(sweep_dir)[4:]
    adam = f"{float(rows[0]['value']):.4g} ± {float(rows[0]['value std']):.2g}"
    assert adam in shown

    monkeypatch.setenv("COLUMNS", "200")
    cli.main([str(sweep_dir)])
    again = one_line(capsys.readouterr().out)
    assert adam in again and "│ adam │ 2 │ 0 1 │" in again
    assert "differ in their provenance.json" not in again  # same code, packages, machine and data


def test_repeats_sweeps_that_many_seeds_for_each_configuration(tmp_path):
    # trainer.max_epochs=-1: every job fails validation at once; what counts here is the jobs the sweep makes
    result = run_cli("-m", "repeats=2", "optimizer=adam,sgd", "trainer.max_epochs=-1", "quiet=true", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    sweep_dir = only_sweep_dir(tmp_path)
    rows = summary_rows(sweep_dir)
    assert [(row["seed"], row["optimizer"]) for row in rows[:4]] == [
        ("42", "adam"),
        ("42", "sgd"),
        ("43", "adam"),
        ("43", "sgd"),
    ]
    assert [(row["job"], row["seed"], row["n"], row["status"]) for row in rows[4:]] == [
        ("mean", "42 43", "0", "2 failed"),
        ("mean", "42 43", "0", "2 failed"),
    ]
    assert json.loads((sweep_dir / "summary.json").read_text())["expected_jobs"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "repeats=2", "seed=1"], "repeats = 2: sweeps the seed itself, so it cannot go with seed=1"),
        (["repeats=3"], "repeats = 3: repeats a configuration over seeds in a sweep; type dlrun -m repeats=3"),
        (["-m", "repeats=1,2"], "repeats=1,2: repeats takes one number, not a sweep; type e.g. repeats=3"),
    ],
)
def test_repeats_that_cannot_be_done_exit_2_naming_the_key(tmp_path, args, message):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in one_line(result.stderr.replace("│", " "))
    assert not (tmp_path / "outputs" / "multirun").exists() or not any((tmp_path / "outputs" / "multirun").iterdir())
