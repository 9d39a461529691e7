"""The autoencoders learn: experiment=autoencoder and experiment=vae on digits (CPU)."""

import json

import pytest
import torch
from sklearn.decomposition import PCA

from dlrun import build
from dlrun.run import run

from conftest import compose_config, model_for

pytestmark = pytest.mark.slow


def _metrics(run_dir) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


def test_autoencoder_reconstructs_better_than_pca_with_as_many_components(run_dir):
    cfg = compose_config("experiment=autoencoder")
    run(cfg, run_dir)
    data = build.data(cfg)
    train, test = data.train[0].flatten(1).numpy(), data.test[0].flatten(1).numpy()
    pca = PCA(n_components=cfg.model.latent_dim).fit(train)
    pca_mse = float(((pca.inverse_transform(pca.transform(test)) - test) ** 2).mean())
    metrics = _metrics(run_dir)
    assert metrics["test/pca_mse"] == pytest.approx(pca_mse, rel=1e-3)  # the task's own baseline is this PCA
    assert metrics["test/mse"] < 0.8 * pca_mse, metrics  # measured: 0.051 against 0.082


def test_autoencoder_finds_a_digit_it_never_saw(run_dir):
    run(compose_config("experiment=autoencoder", "task.anomaly_class=7"), run_dir)
    assert _metrics(run_dir)["test/anomaly_auroc"] > 0.9  # measured: 0.99


def test_vae_elbo_improves_over_training_and_its_samples_differ(tmp_path):
    run(compose_config("experiment=vae", "trainer.max_epochs=1"), tmp_path / "first")
    cfg = compose_config("experiment=vae")
    run(cfg, tmp_path / "last")
    first, last = _metrics(tmp_path / "first")["test/elbo"], _metrics(tmp_path / "last")["test/elbo"]
    assert last > first + 20, (first, last)  # nats per image; measured: -71 after the first epoch, -33 after 30
    model = model_for(cfg)
    model.load_state_dict(torch.load(tmp_path / "last" / "model.pt", weights_only=True))
    samples = model.sample(64, generator=torch.Generator().manual_seed(0)).flatten(1)
    distances = torch.cdist(samples, samples) + torch.eye(len(samples)) * 1e9
    assert distances.min() > 1.0  # no two of the 64 samples alike (measured: 1.9 apart at the least)
    assert samples.std(dim=0).mean() > 0.3  # they vary pixel by pixel (the data: 0.61; measured: 0.45)
