"""Tasks: what one training or evaluation step means. The trainer runs any object with this shape:

model: nn.Module                                   # every network the task trains
configure_optimizers(build_optimizer) -> dict[str, Optimizer]
training_step(batch) -> dict[str, Tensor]          # {"loss": ..., other per-batch metrics}
evaluation_step(batch) -> dict[str, Tensor]        # {"loss": ..., "output": ..., "target": ...}
compute_metrics(outputs, targets) -> dict[str, float]   # a whole split's metrics, names without the split
metric_names() -> list[str]                        # what compute_metrics returns, plus "loss"

supervised.py: classification and regression (auxiliary classifiers' losses included); forecast.py: the next value
of a time series, beside the naive forecast; language_model.py: the next character of a text.
"""
