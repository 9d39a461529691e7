"""Learning bar for task=gan: experiment=gan on digits draws every digit, clearly enough for a classifier."""

import pytest
import torch
from sklearn.neural_network import MLPClassifier

from dlrun import build
from dlrun.inputs import load_trained
from dlrun.run import run

from conftest import compose_config

SAMPLES = 1000


@pytest.mark.slow
@pytest.mark.long  # over 20 s on 2 cores: `make learn` runs it, `make test` does not
def test_dcgan_draws_every_digit_clearly(run_dir):
    cfg = compose_config("experiment=gan")  # the shipped preset, on the CPU
    run(cfg, run_dir)
    model = load_trained(run_dir / "checkpoints" / "best.pt").model
    samples = model.sample(SAMPLES, torch.Generator().manual_seed(1)).flatten(1).numpy()

    data = build.data(cfg)  # a judge of its own: an MLP trained on the same training split
    classifier = MLPClassifier(hidden_layer_sizes=(128,), max_iter=500, random_state=0)
    classifier.fit(data.train[0].flatten(1).numpy(), data.train[1].numpy())
    assert classifier.score(data.test[0].flatten(1).numpy(), data.test[1].numpy()) > 0.95

    probabilities = classifier.predict_proba(samples)
    classes = set(probabilities.argmax(axis=1).tolist())
    mean_top_probability = probabilities.max(axis=1).mean()
    assert classes == set(range(10))
    assert mean_top_probability >= 0.8
