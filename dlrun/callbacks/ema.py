"""An exponential moving average of the weights (buffers too: batch-norm statistics), kept on the training device
by torch.optim.swa_utils.AveragedModel: average = decay * average + (1 - decay) * weights, every_n_steps optimizer
steps. Validation scores the average, so best.pt, the test and model.pt hold it; last.pt keeps the trained weights
and the average's state, so a resume continues both exactly. Off while decay is null."""

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dlrun.callbacks.base import Callback
from dlrun.errors import ConfigError


class EMA(Callback):
    on_every_rank = True  # under torchrun every rank validates its shard, with the same average

    def __init__(self, *, decay: float | None = None, every_n_steps: int = 1):
        if decay is not None and not 0 < decay < 1:
            raise ConfigError(f"callbacks.ema.decay = {decay}: must be between 0 and 1; type callbacks.ema.decay=0.999")
        if not (isinstance(every_n_steps, int) and every_n_steps >= 1):
            raise ConfigError(
                f"callbacks.ema.every_n_steps = {every_n_steps}: must be a whole number >= 1; "
                "type callbacks.ema.every_n_steps=1"
            )
        self.decay, self.every_n_steps = decay, every_n_steps
        self.average: AveragedModel | None = None
        self.resumed: dict = {}  # a checkpoint's average, loaded once the average exists (at the start of the fit)

    def on_fit_start(self, trainer) -> None:
        if self.decay is None:
            return
        self.average = AveragedModel(
            trainer.network, device=trainer.device, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True
        )
        if self.resumed:
            self.average.load_state_dict(self.resumed)
        trainer.evaluation_model = self.average.module

    def on_train_step_end(self, trainer) -> None:
        if self.average is not None and trainer.state.step % self.every_n_steps == 0:
            self.average.update_parameters(trainer.network)

    def state_dict(self) -> dict:
        return {} if self.average is None else self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.resumed = state
