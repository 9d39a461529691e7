"""Tasks: what one training or evaluation step means. The trainer runs any subclass of base.Task:

model: nn.Module                                   # every network the task trains
configure_optimizers(build_optimizer) -> dict[str, Optimizer]
training_step(batch) -> dict[str, Tensor]          # {"loss": ..., other per-batch metrics}
evaluation_step(batch) -> dict[str, Tensor]        # {"loss": ..., "output": ..., "target": ...}
compute_metrics(outputs, targets) -> dict[str, float]   # a whole split's metrics, names without the split
metric_names() -> list[str]                        # what compute_metrics returns, plus "loss" when it has one

Optional (base.Task's do nothing):
manual_optimization = True                         # training_step(batch, optimize) then calls optimize(loss, name)
                                                   # for each update it makes (GAN: discriminator, then generator)
prepare_data(data)                                 # change the splits before the schedule is sized from them
setup(data, device)                                # before training and before a resume restores the state
state_dict() / load_state_dict(state)              # what else a resume needs (a replay buffer), in the checkpoint

supervised.py: classification and regression (auxiliary classifiers' losses included); forecast.py: the next value
of a time series, beside the naive forecast; language_model.py: the next character of a text; autoencoder.py and
vae.py: reconstruction (denoising, anomaly detection); gan.py: a generator against a discriminator (steps itself);
dqn.py: deep Q-learning on a gymnasium environment (steps itself, with replay.py's buffer).
"""
