"""Tasks: what one training or evaluation step means. The trainer runs any subclass of base.Task, whose methods
say what a task gives it (required) and what it may add (optional hooks).

supervised.py: classification and regression (auxiliary classifiers' losses included); forecast.py: the next value
of a time series, beside the naive forecast; language_model.py: the next character of a text; autoencoder.py and
vae.py: reconstruction (denoising, anomaly detection); gan.py: a generator against a discriminator (steps itself);
dqn.py: deep Q-learning on a gymnasium environment (steps itself, with replay.py's buffer).
"""
