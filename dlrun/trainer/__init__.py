"""The central trainer: the loop over epochs and batches, validation, stopping, and the state a checkpoint holds.

Its concerns are the modules beside it: placement (device, memory format, autocast), optimization (gradient scaling,
clipping, accumulation, a task's own steps, the schedulers) and metric_sums (the epoch's training metrics, summed
on the device). It knows nothing about what a batch means (the task does) nor about logging and files (callbacks do).
"""

import itertools
import math
import os
import random
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from dlrun import distributed, pause
from dlrun.callbacks.base import Callback
from dlrun.data.module import DataModule
from dlrun.distributed import World
from dlrun.errors import ConfigError
from dlrun.schedulers import ScheduledLR
from dlrun.signals import requests, stop_signals
from dlrun.tasks.base import Task
from dlrun.trainer.metric_sums import EpochSums
from dlrun.trainer.nonfinite_data import nonfinite_values
from dlrun.trainer.optimization import Optimization, learning_rates, step_schedulers
from dlrun.trainer.placement import Placement, resolve_device

__all__ = ["NonFiniteData", "NonFiniteLoss", "State", "Trainer", "TrainingInterrupted", "resolve_device"]

STOP_AGREEMENT_STEPS = 10  # under torchrun the ranks agree on a stop signal every this many optimizer steps
FAST_DEV_RUN_BATCHES = 2


@dataclass
class State:
    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken; training steps (batches, environment steps) for a task that steps itself
    batch: int = 0  # training batches done in the current epoch (non-zero only in a mid-epoch checkpoint)
    should_stop: bool = False  # a callback sets it to end training after this epoch
    metrics: dict[str, float] = field(default_factory=dict)  # the latest epoch's metrics
    skipped_batches: int = 0  # batches whose loss was NaN or infinite, skipped (nonfinite_loss=skip)


class TrainingInterrupted(Exception):
    """A stop signal (dlrun.signals) ended a phase after its current step or batch; in training and validation the
    callbacks have saved the state."""

    def __init__(self, signum: int, state: State, phase: str = "training"):
        self.signum, self.state, self.phase = signum, state, phase  # phase: start-up, training, validation, test, ...
        super().__init__(f"interrupted by signal {signum} in {phase} at epoch {state.epoch + 1}, step {state.step}")


class NonFiniteLoss(ConfigError):
    """The training loss became NaN or infinite: the configuration diverges."""


class NonFiniteData(NonFiniteLoss):
    """The training loss became NaN or infinite, and the training data hold NaN or infinite values."""


class Trainer:
    def __init__(
        self,
        *,
        max_epochs: int,
        device: str,
        precision: str,
        gradient_clip_val: float | None,
        accumulate_grad_batches: int,
        check_val_every_n_epoch: int,
        log_every_n_steps: int,
        limit_batches: int | None,
        fast_dev_run: bool,
        deterministic: bool,
        nonfinite_loss: str,
        compile: bool,
        compile_backend: str,
        channels_last: bool,
        data_on_device: bool | str,
        preemption_signal: str | None,
        callbacks: Sequence[Callback] = (),
    ):
        """The keys of conf/trainer/default.yaml, which gives each its default and meaning (there only:
        Trainer(**dlrun.config.trainer_defaults(), ...) is a trainer of the defaults)."""
        self.max_epochs = 1 if fast_dev_run else max_epochs
        self.limit_batches = FAST_DEV_RUN_BATCHES if fast_dev_run else limit_batches
        self.world = World.from_env()
        self.device = resolve_device(device, self.world.local_rank)
        self.placement = Placement(
            self.device, precision=precision, channels_last=channels_last, data_on_device=data_on_device
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=str(precision) == "16")
        self.optimization = Optimization(
            self.scaler,
            self.device.type,
            gradient_clip_val=gradient_clip_val,
            accumulate_grad_batches=accumulate_grad_batches,
        )
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.log_every_n_steps = log_every_n_steps
        self.skip_nonfinite = nonfinite_loss == "skip"
        self.compile, self.compile_backend = compile, compile_backend
        self.stop_signals = stop_signals(preemption_signal)  # each ends a phase after its current step or batch
        # Under torchrun only rank 0 prints, logs and saves; early stopping decides on every rank alike.
        self.callbacks = [c for c in callbacks if self.world.is_main or c.on_every_rank]
        self.state = State()
        self.epoch_sums: EpochSums | None = None  # the training metrics of the epoch in progress
        self._resumed_sums: dict | None = None  # a mid-epoch checkpoint's sums, for the epoch it resumes
        self.task: Task | None = None
        self.network: torch.nn.Module | None = None  # the task's model, unwrapped from DistributedDataParallel
        # What validation scores and best.pt holds instead of the network, set by a callback (callbacks.ema's average)
        self.evaluation_model: torch.nn.Module | None = None
        self.data: DataModule | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: list[ScheduledLR] = []
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = not deterministic  # cuDNN picks the fastest kernels for the shapes seen

    # -- the loop -----------------------------------------------------------------------------------

    def fit(
        self,
        task: Task,
        data: DataModule,
        optimizers: dict[str, torch.optim.Optimizer],
        schedulers: Iterable[ScheduledLR] = (),
        checkpoint: dict | None = None,
    ) -> State:
        """Train until max_epochs or a callback stops it; `checkpoint` (a state_dict of this class) resumes."""
        self.task, self.data, self.optimizers, self.schedulers = task, data, optimizers, list(schedulers)
        self.network = self.placement.put_model(task.model)
        self.placement.put_data(self._shard(data))
        if task.manual_optimization:
            self.optimization.check_manual_settings(skip_nonfinite=self.skip_nonfinite)
        task.setup(data, self.device)
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
        if self.world.distributed:
            distributed.init_process_group(self.device)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            task.model = DistributedDataParallel(self.network, device_ids=device_ids)
        if self.compile:
            task.model = torch.compile(task.model, backend=self.compile_backend)
        self._emit("on_fit_start")
        with requests.caught(*self.stop_signals):
            try:
                while self.state.epoch < self.max_epochs and not self.state.should_stop:
                    self._run_epoch(task, data)
            except TrainingInterrupted:
                self._emit("on_interrupt")
                raise
            finally:
                task.model = self.network
                self._emit("on_fit_end")
        return self.state

    def test(self, task: Task, data: DataModule, weights: dict[str, Tensor] | None = None) -> dict[str, float]:
        """Evaluate the given weights (the best checkpoint's, say) on the val and test splits; without them, the
        evaluation model's when a callback set one, else the network's."""
        if weights is None and self.evaluation_model is not None:
            weights = self.evaluation_model.state_dict()
        if weights is not None:
            task.model.load_state_dict(weights)
        task.model.to(self.device)
        self.placement.put_data(data)
        with requests.caught(*self.stop_signals):
            pause.point("test")
            metrics = self.evaluate(task, data, "val", phase="test") | self.evaluate(task, data, "test")
            self._check_stop("test", agree=True)
        self._emit("on_test_end", metrics)
        return metrics

    @torch.no_grad()
    def evaluate(self, task: Task, data: DataModule, split: str, phase: str | None = None) -> dict[str, float]:
        """The task's metrics over a whole split, named split/name; a stop signal ends it after a batch, as the
        phase (validation of the val split, else test) named."""
        phase = phase or ("validation" if split == "val" else "test")
        task.model.eval()
        loss_sums, outputs, targets = [], [], []  # per batch: loss times batch size, outputs, targets
        place = self.placement.placer(data)
        for batch in self._limited(data.batches(split), data.num_batches(split)):
            with self.placement.autocast():
                step = task.evaluation_step(place(batch))
            if "loss" in step:  # tasks without a loss of their own (greedy episodes) leave it out
                loss_sums.append(step["loss"].float() * len(step["target"]))
            outputs.append(step["output"].float())
            targets.append(step["target"])
            self._check_stop(phase, agree=False)
        loss_sum = torch.stack(loss_sums).sum() if loss_sums else torch.zeros((), device=self.device)
        samples = torch.tensor(float(sum(len(target) for target in targets)), device=self.device)
        totals = torch.stack([loss_sum, samples])
        # Under torchrun each rank evaluated its shard: the sums add up, the samples are gathered back in order.
        loss_sum, count = distributed.sum_across_ranks(totals).tolist()
        output, target = (distributed.gather_shards(torch.cat(parts), int(count)) for parts in (outputs, targets))
        self._emit("on_evaluation_end", split, output, target)
        metrics = {"loss": loss_sum / count} if "loss" in task.metric_names() else {}
        metrics |= task.compute_metrics(output, target)
        return {f"{split}/{name}": value for name, value in metrics.items()}

    def _validate(self, task: Task, data: DataModule) -> dict[str, float]:
        """The val metrics of the evaluation model when a callback set one, else of the network."""
        self._check_stop("validation", agree=True)  # a signal in the epoch's last steps, under torchrun
        pause.point("validation")
        if self.evaluation_model is None:
            return self.evaluate(task, data, "val")
        trained, task.model = task.model, self.evaluation_model
        try:
            return self.evaluate(task, data, "val")
        finally:
            task.model = trained

    def optimizer_steps_per_epoch(self, data: DataModule) -> int:
        batches = self._num_batches(self._shard(data).num_batches("train"))
        return math.ceil(batches / self.optimization.accumulate_grad_batches)

    def _run_epoch(self, task: Task, data: DataModule) -> None:
        epoch = self.state.epoch
        metrics = self._train_epoch(task, data, epoch)
        if (epoch + 1) % self.check_val_every_n_epoch == 0 or epoch + 1 == self.max_epochs:
            metrics |= self._validate(task, data)  # interrupted, last.pt resumes at this validation
        metrics |= learning_rates(self.optimizers)
        step_schedulers(self.schedulers, "epoch", metrics)
        self.state.metrics = metrics
        self.state.epoch, self.state.batch, self.epoch_sums = epoch + 1, 0, None
        self._emit("on_epoch_end", metrics)

    def _train_epoch(self, task: Task, data: DataModule, epoch: int) -> dict[str, float]:
        task.model.train()
        manual = task.manual_optimization
        num_batches = self._num_batches(data.num_batches("train"))  # this rank's share
        self._emit("on_train_epoch_start", num_batches)
        self.epoch_sums = epoch_sums = EpochSums(task, self.device)
        if self._resumed_sums:  # the sums of the batches a mid-epoch checkpoint did
            epoch_sums.load_state_dict(self._resumed_sums)
        self._resumed_sums = None
        checked_step = self.state.step  # the summed loss was finite up to this step
        resumed = self.state.batch  # a resumed epoch skips the batches done, without reading them
        batches = itertools.islice(data.batches("train", epoch, start=resumed), num_batches - resumed)
        place = self.placement.placer(data)
        for index, batch in enumerate(batches, start=resumed):
            with self.placement.autocast():
                if manual:  # the task calls optimize(loss, name) for each update it makes
                    step = task.training_step(place(batch), self._manual_step)
                else:
                    step = task.training_step(place(batch))
            loss = step.get("loss")
            if self.skip_nonfinite and loss is not None and self._nonfinite(loss):
                self.state.skipped_batches += 1
                continue
            if not manual:
                self.optimization.backward(loss)
            epoch_sums.add(step)
            self._emit("on_train_batch_end")
            if not manual:  # a task that steps itself did so in training_step
                if not self.optimization.completes_step(index + 1, num_batches):
                    continue  # the gradients accumulate over more batches
                self.optimization.step(self.optimizers.values())
            self.state.step += 1
            step_schedulers(self.schedulers, "step")
            self.state.batch = index + 1
            if self.state.step % self.log_every_n_steps == 0:
                checked_step = self._check_finite(epoch_sums.read(), checked_step)
                if loss is not None:
                    self._emit("on_log", {"train/loss": loss.item()})
            self._emit("on_train_step_end")
            pause.point("train_step")
            self._check_stop("training", agree=self.state.step % STOP_AGREEMENT_STEPS == 0)
        sums = epoch_sums.read()  # empty when nonfinite_loss=skip skipped every batch
        self._check_finite(sums, checked_step)
        means = epoch_sums.means(sums)
        if self.skip_nonfinite:
            means["skipped_batches"] = self.state.skipped_batches
        # The per-step curve is train/loss; the epoch's mean loss gets a name of its own.
        return {f"train/{'loss_epoch' if name == 'loss' else name}": value for name, value in means.items()}

    def _nonfinite(self, loss: Tensor) -> bool:
        """nonfinite_loss=skip: whether to skip the batch. Under torchrun every rank skips it when the loss of any is
        NaN or infinite: DDP's backward is a collective that all ranks join or none."""
        return distributed.any_rank(not torch.isfinite(loss), self.device)

    def _check_stop(self, phase: str, *, agree: bool) -> None:
        """After a whole step or batch: TrainingInterrupted if a stop signal arrived. Under torchrun only where agree
        is true (every rank calls it there), when the signal reached any rank: they stop at the same step."""
        signum = requests.signum
        if self.world.distributed:
            if not (agree and distributed.any_rank(signum is not None, self.device)):
                return
        elif signum is None:
            return
        raise TrainingInterrupted(signum or signal.SIGTERM, self.state, phase)

    def _check_finite(self, sums: dict[str, float], checked_step: int) -> int:
        """Once per log interval and epoch: a NaN or infinite value makes its epoch sum so from that step on."""
        name = next((name for name, value in sums.items() if not math.isfinite(value)), None)
        if name is None:
            return self.state.step
        step = self.state.step
        steps = f"step {step}" if checked_step + 1 >= step else f"one of steps {checked_step + 1}-{step}"
        stopped = f"train/{name} became NaN or infinite at {steps} (epoch {self.state.epoch + 1}); training stopped"
        in_data = nonfinite_values(self.data, self.state.epoch, self.state.batch)  # not the optimizer's doing then
        if in_data:
            raise NonFiniteData(
                f"{stopped}: the training data hold NaN or infinite values ({in_data}), which no learning rate "
                "trains on; fill them in or drop those rows in the dataset's files"
            )
        skip = "" if self.task.manual_optimization else ", or trainer.nonfinite_loss=skip to skip such batches"
        raise NonFiniteLoss(
            f"{stopped} and the last good checkpoint is kept. Try a lower optimizer.lr, trainer.gradient_clip_val=1.0, "
            f"trainer.precision=32{skip}"
        )

    def _manual_step(self, loss: Tensor, name: str = "model") -> None:
        """What a task with manual_optimization calls: backward of loss, then a step of the optimizer `name`."""
        self.optimization.manual_step(self.optimizers[name], loss)

    # -- helpers ------------------------------------------------------------------------------------

    def _shard(self, data: DataModule) -> DataModule:
        """Under torchrun each rank reads its own equal share of every split (DataModule.shard)."""
        return data.shard(self.world.rank, self.world.size)

    def _num_batches(self, available: int) -> int:
        return available if self.limit_batches is None else min(available, self.limit_batches)

    def _limited(self, batches, available: int):
        return itertools.islice(batches, self._num_batches(available))

    def _emit(self, event: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    # -- checkpoint state ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything a resumed run needs: tensors and plain containers only (loads with weights_only=True)."""
        return {
            "epoch": self.state.epoch,
            "step": self.state.step,
            "batch": self.state.batch,
            "should_stop": self.state.should_stop,  # early stopping ended training: a resume goes on to the test
            "epoch_sums": self.epoch_sums.state_dict() if self.state.batch and self.epoch_sums else {},
            "model": self.network.state_dict(),
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "schedulers": [scheduled.scheduler.state_dict() for scheduled in self.schedulers],
            "scaler": self.scaler.state_dict(),
            "preprocessing": self.data.preprocessing(),
            "task": self.task.state_dict(),  # a replay buffer, say
            "callbacks": {type(callback).__name__: callback.state_dict() for callback in self.callbacks},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": random.getstate(),
            },
        }

    def load_state_dict(self, checkpoint: dict) -> None:
        self.state.epoch, self.state.step, self.state.batch = (
            checkpoint["epoch"],
            checkpoint["step"],
            checkpoint["batch"],
        )
        self.state.should_stop = checkpoint.get("should_stop", False)
        self._resumed_sums = checkpoint.get("epoch_sums") or None
        self.network.load_state_dict(checkpoint["model"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(checkpoint["optimizers"][name])
        for scheduled, state in zip(self.schedulers, checkpoint["schedulers"], strict=True):
            scheduled.scheduler.load_state_dict(state)
        if checkpoint["scaler"]:
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.task.load_state_dict(checkpoint.get("task", {}))
        for callback in self.callbacks:
            callback.load_state_dict(checkpoint["callbacks"].get(type(callback).__name__, {}))
        rng = checkpoint["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate(rng["python"])
