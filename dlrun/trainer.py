"""The central trainer: epochs, optimizer steps, device, precision, clipping, accumulation, validation.

It knows nothing about what a batch means (the task does) nor about logging and files (callbacks do).
"""

import contextlib
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

from dlrun import distributed
from dlrun.callbacks.base import Callback
from dlrun.data.module import DataModule
from dlrun.distributed import World
from dlrun.errors import ConfigError
from dlrun.schedulers import ScheduledLR
from dlrun.signals import StopRequests
from dlrun.tasks.base import Task

AUTOCAST_DTYPES = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
TRAINING_OUTPUTS = ("output", "target")  # what a training step returns for task.training_metrics, not as metrics
KEPT_STEPS = 32  # at most this many steps' metrics and outputs wait on the device to be summed (bounds their memory)
STOP_AGREEMENT_STEPS = 10  # under torchrun the ranks agree on a stop signal every this many optimizer steps
FAST_DEV_RUN_BATCHES = 2


@dataclass
class State:
    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken; training steps (batches, environment steps) for a task that steps itself
    batch: int = 0  # training batches done in the current epoch (non-zero only in a mid-epoch checkpoint)
    should_stop: bool = False  # a callback sets it to end training after this epoch
    metrics: dict[str, float] = field(default_factory=dict)  # the latest epoch's metrics
    interrupted_by: int | None = None  # the signal (SIGINT, SIGTERM) that stopped training mid-epoch
    skipped_batches: int = 0  # batches whose loss was NaN or infinite, skipped (nonfinite_loss=skip)


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after the current step; callbacks have saved the state."""

    def __init__(self, signum: int, state: State):
        self.signum, self.state = signum, state
        super().__init__(f"interrupted by signal {signum} at epoch {state.epoch + 1}, step {state.step}")


class NonFiniteLoss(ConfigError):
    """The training loss became NaN or infinite: the configuration diverges."""


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """The torch device for trainer.device; under torchrun each process takes the GPU of its local rank."""
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    if device != "auto":
        return torch.device(device)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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
        channels_last: bool,
        data_on_device: bool | str,
        callbacks: Sequence[Callback] = (),
    ):
        """The keys of conf/trainer/default.yaml, which gives each its default and meaning (there only:
        Trainer(**dlrun.config.trainer_defaults(), ...) is a trainer of the defaults)."""
        self.max_epochs = 1 if fast_dev_run else max_epochs
        self.limit_batches = FAST_DEV_RUN_BATCHES if fast_dev_run else limit_batches
        self.world = World.from_env()
        self.device = resolve_device(device, self.world.local_rank)
        self.autocast_dtype = AUTOCAST_DTYPES[str(precision)]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=str(precision) == "16")
        self.gradient_clip_val = gradient_clip_val
        self.accumulate_grad_batches = accumulate_grad_batches
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.log_every_n_steps = log_every_n_steps
        self.skip_nonfinite = nonfinite_loss == "skip"
        self.compile = compile
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if not (isinstance(data_on_device, bool) or data_on_device == "auto"):
            raise ValueError(f"data_on_device must be True, False or 'auto', not {data_on_device!r}")
        self.data_on_device = data_on_device
        # Under torchrun only rank 0 prints, logs and saves; early stopping decides on every rank alike.
        self.callbacks = [c for c in callbacks if self.world.is_main or c.on_every_rank]
        self.state = State()
        self._stop_requests = StopRequests()  # entered during fit: a SIGINT/SIGTERM ends it after the current step
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
        self.network = task.model.to(self.device, memory_format=self.memory_format)
        self._put_data(self._shard(data))
        if task.manual_optimization:
            self._check_manual_settings()
        task.setup(data, self.device)
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
        if self.world.distributed:
            distributed.init_process_group(self.device)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            task.model = DistributedDataParallel(self.network, device_ids=device_ids)
        if self.compile:
            task.model = torch.compile(task.model)
        self._emit("on_fit_start")
        try:
            with StopRequests() as self._stop_requests:
                while self.state.epoch < self.max_epochs and not self.state.should_stop:
                    self._run_epoch(task, data)
                    if self.state.interrupted_by is not None:
                        self._emit("on_interrupt")
                        raise TrainingInterrupted(self.state.interrupted_by, self.state)
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
        self._put_data(data)
        metrics = self.evaluate(task, data, "val") | self.evaluate(task, data, "test")
        self._emit("on_test_end", metrics)
        return metrics

    @torch.no_grad()
    def evaluate(self, task: Task, data: DataModule, split: str) -> dict[str, float]:
        """The task's metrics over a whole split, named split/name."""
        task.model.eval()
        loss_sums, outputs, targets = [], [], []  # per batch: loss times batch size, outputs, targets
        place = self._placer(data)
        for batch in self._limited(data.batches(split), data.num_batches(split)):
            with self._autocast():
                step = task.evaluation_step(place(batch))
            if "loss" in step:  # tasks without a loss of their own (greedy episodes) leave it out
                loss_sums.append(step["loss"].float() * len(step["target"]))
            outputs.append(step["output"].float())
            targets.append(step["target"])
        loss_sum = torch.stack(loss_sums).sum() if loss_sums else torch.zeros((), device=self.device)
        samples = torch.tensor(float(sum(len(target) for target in targets)), device=self.device)
        totals = torch.stack([loss_sum, samples])
        # Under torchrun each rank evaluated its shard: the sums add up, the samples are gathered back in order.
        loss_sum, count = distributed.sum_across_ranks(totals).tolist()
        output, target = (distributed.gather_shards(torch.cat(parts), int(count)) for parts in (outputs, targets))
        metrics = {"loss": loss_sum / count} if "loss" in task.metric_names() else {}
        metrics |= task.compute_metrics(output, target)
        return {f"{split}/{name}": value for name, value in metrics.items()}

    def _validate(self, task: Task, data: DataModule) -> dict[str, float]:
        """The val metrics of the evaluation model when a callback set one, else of the network."""
        if self.evaluation_model is None:
            return self.evaluate(task, data, "val")
        trained, task.model = task.model, self.evaluation_model
        try:
            return self.evaluate(task, data, "val")
        finally:
            task.model = trained

    def optimizer_steps_per_epoch(self, data: DataModule) -> int:
        return math.ceil(self._num_batches(self._shard(data).num_batches("train")) / self.accumulate_grad_batches)

    def _run_epoch(self, task: Task, data: DataModule) -> None:
        epoch = self.state.epoch
        metrics = self._train_epoch(task, data, epoch)
        if self.state.interrupted_by is not None:
            return
        if (epoch + 1) % self.check_val_every_n_epoch == 0 or epoch + 1 == self.max_epochs:
            metrics |= self._validate(task, data)
        metrics |= self._learning_rates()
        self._step_schedulers("epoch", metrics)
        self.state.metrics = metrics
        self._emit("on_epoch_metrics", metrics)
        self.state.epoch += 1
        self._emit("on_epoch_end")

    def _train_epoch(self, task: Task, data: DataModule, epoch: int) -> dict[str, float]:
        task.model.train()
        manual = task.manual_optimization
        num_batches = self._num_batches(data.num_batches("train"))  # this rank's share
        self._emit("on_train_epoch_start", num_batches)
        totals: dict[str, Tensor] = {}  # the epoch's metric sums, on the device: no host sync per step
        counts: dict[str, int] = {}  # what each sum is divided by: batches, or what training_metrics counted
        pending: list[dict] = []  # the steps not yet in totals: they are added once per log interval
        checked_step = self.state.step  # the summed loss was finite up to this step
        resumed = self.state.batch  # a resumed epoch skips the batches done, without reading them
        batches = itertools.islice(data.batches("train", epoch, start=resumed), num_batches - resumed)
        place = self._placer(data)
        for index, batch in enumerate(batches, start=self.state.batch):
            with self._autocast():
                if manual:  # the task calls optimize(loss, name) for each update it makes
                    step = task.training_step(place(batch), self._manual_step)
                else:
                    step = task.training_step(place(batch))
            loss = step.get("loss")
            if self.skip_nonfinite and loss is not None and self._nonfinite(loss):
                self.state.skipped_batches += 1
                continue
            if not manual:
                self.scaler.scale(
                    loss / self.accumulate_grad_batches if self.accumulate_grad_batches > 1 else loss
                ).backward()
            pending.append(step)
            if len(pending) == KEPT_STEPS:
                self._add_metrics(task, pending, totals, counts)
            self._emit("on_train_batch_end")
            if manual:
                self._count_step()
            elif (index + 1) % self.accumulate_grad_batches and index + 1 != num_batches:
                continue
            else:
                self._optimizer_step()
            self.state.batch = index + 1
            if self.state.step % self.log_every_n_steps == 0:
                self._add_metrics(task, pending, totals, counts)
                checked_step = self._check_finite(self._read_sums(totals), checked_step)
                if loss is not None:
                    self._emit("on_log", {"train/loss": loss.item()})
            self._emit("on_train_step_end")
            if self._stop_requested():
                self.state.interrupted_by = self._stop_requests.signum or signal.SIGTERM
                return {}
        self._add_metrics(task, pending, totals, counts)
        sums = self._read_sums(totals)  # empty when nonfinite_loss=skip skipped every batch
        self._check_finite(sums, checked_step)
        self.state.batch = 0
        means = {name: total / counts[name] for name, total in sums.items()}
        if self.skip_nonfinite:
            means["skipped_batches"] = self.state.skipped_batches
        # The per-step curve is train/loss; the epoch's mean loss gets a name of its own.
        return {f"train/{'loss_epoch' if name == 'loss' else name}": value for name, value in means.items()}

    @torch.no_grad()
    def _add_metrics(self, task: Task, steps: list[dict], totals: dict[str, Tensor], counts: dict[str, int]) -> None:
        """Add the metrics of the steps since the last call to the epoch's sums, and forget the steps: a few
        operations per log interval (or KEPT_STEPS steps) instead of some per step. A step's "output" and "target"
        go to task.training_metrics together; its other values are per-batch metrics."""
        if not steps:
            return
        sums: dict[str, tuple[Tensor, int]] = {}
        for name in dict.fromkeys(name for step in steps for name in step if name not in TRAINING_OUTPUTS):
            values = [step[name] for step in steps if name in step]
            values = torch.stack(values) if isinstance(values[0], Tensor) else torch.tensor(values)
            sums[name] = (values.to(self.device, torch.float32).sum(), len(values))  # bf16 would round the sum
        kept = [(step["output"], step["target"]) for step in steps if "output" in step]
        if kept:
            outputs, targets = zip(*kept, strict=True)
            sums |= task.training_metrics(torch.cat(outputs), torch.cat(targets))
        for name, (total, count) in sums.items():
            totals[name] = totals[name] + total if name in totals else total.float()
            counts[name] = counts.get(name, 0) + count
        steps.clear()

    def _nonfinite(self, loss: Tensor) -> bool:
        """nonfinite_loss=skip: whether to skip the batch. Under torchrun every rank skips it when the loss of any is
        NaN or infinite: DDP's backward is a collective that all ranks join or none."""
        return distributed.any_rank(not torch.isfinite(loss), self.device)

    def _stop_requested(self) -> bool:
        """A SIGINT/SIGTERM arrived; under torchrun the ranks agree on it every STOP_AGREEMENT_STEPS steps."""
        requested = self._stop_requests.signum is not None
        if not self.world.distributed:
            return requested
        return self.state.step % STOP_AGREEMENT_STEPS == 0 and distributed.any_rank(requested, self.device)

    def _read_sums(self, totals: dict[str, Tensor]) -> dict[str, float]:
        """The metric sums on the host, in one read. Under torchrun their mean over the ranks: every rank then takes
        the same decision on a NaN (one rank stopping alone would leave the others waiting in a collective)."""
        if not totals:
            return {}
        sums = distributed.mean_across_ranks(torch.stack(list(totals.values())))
        return dict(zip(totals, sums.tolist(), strict=True))

    def _check_finite(self, sums: dict[str, float], checked_step: int) -> int:
        """Once per log interval and epoch: a NaN or infinite value makes its epoch sum so from that step on."""
        name = next((name for name, value in sums.items() if not math.isfinite(value)), None)
        if name is None:
            return self.state.step
        step = self.state.step
        steps = f"step {step}" if checked_step + 1 >= step else f"one of steps {checked_step + 1}-{step}"
        skip = "" if self.task.manual_optimization else ", or trainer.nonfinite_loss=skip to skip such batches"
        raise NonFiniteLoss(
            f"train/{name} became NaN or infinite at {steps} (epoch {self.state.epoch + 1}); training stopped and the "
            f"last good checkpoint is kept. Try a lower optimizer.lr, trainer.gradient_clip_val=1.0, "
            f"trainer.precision=32{skip}"
        )

    def _check_manual_settings(self) -> None:
        """A task that steps its optimizers itself cannot have its batches accumulated or skipped by the trainer."""
        if self.accumulate_grad_batches > 1:
            raise ConfigError(
                f"trainer.accumulate_grad_batches = {self.accumulate_grad_batches}: this task steps its optimizers "
                "itself; type trainer.accumulate_grad_batches=1"
            )
        if self.skip_nonfinite:
            raise ConfigError(
                "trainer.nonfinite_loss = skip: this task steps its optimizers itself, so a batch cannot be skipped "
                "after the fact; type trainer.nonfinite_loss=stop"
            )

    def _optimizer_step(self) -> None:
        for optimizer in self.optimizers.values():
            self._clip_and_step(optimizer)
        self.scaler.update()
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        self._count_step()

    def _manual_step(self, loss: Tensor, name: str = "model") -> None:
        """What a task with manual_optimization calls: backward of loss, then a step of the optimizer `name`
        (clipped and scaled like any other step); the gradients are zeroed after it."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=False):  # backward outside autocast, as torch advises
            self.scaler.scale(loss).backward()
        self._clip_and_step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def _clip_and_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.gradient_clip_val:
            self.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.gradient_clip_val)
        self.scaler.step(optimizer)

    def _count_step(self) -> None:
        self.state.step += 1
        self._step_schedulers("step")

    def _step_schedulers(self, interval: str, metrics: dict[str, float] | None = None) -> None:
        for scheduled in self.schedulers:
            if scheduled.interval != interval:
                continue
            if scheduled.monitor is None:
                scheduled.scheduler.step()
            elif scheduled.monitor in (metrics or {}):  # plateau: only after a validation
                scheduled.scheduler.step(metrics[scheduled.monitor])

    def _learning_rates(self) -> dict[str, float]:
        rates = {name: optimizer.param_groups[0]["lr"] for name, optimizer in self.optimizers.items()}
        if len(rates) == 1:
            return {"train/lr": next(iter(rates.values()))}
        return {f"train/lr_{name}": rate for name, rate in rates.items()}

    # -- helpers ------------------------------------------------------------------------------------

    def _shard(self, data: DataModule) -> DataModule:
        """Under torchrun each rank reads its own equal share of every split (DataModule.shard)."""
        return data.shard(self.world.rank, self.world.size)

    def _num_batches(self, available: int) -> int:
        return available if self.limit_batches is None else min(available, self.limit_batches)

    def _limited(self, batches, available: int):
        return itertools.islice(batches, self._num_batches(available))

    def _put_data(self, data: DataModule) -> None:
        """The in-memory splits go to the device once, batches are then gathered there, where trainer.data_on_device
        lets them (auto: where they fit, DataModule.fits_on); otherwise each batch is copied to it."""
        if self.data_on_device is True or (self.data_on_device == "auto" and data.fits_on(self.device)):
            data.to(self.device)

    def _placer(self, data: DataModule):
        """What puts a batch on the device: nothing when the splits live there already in the right layout."""
        if data.resident_on == self.device and self.memory_format is torch.contiguous_format:
            return _as_is
        return self._to_device

    def _to_device(self, batch):
        return tuple(self._placed(t) for t in batch)

    def _placed(self, tensor: Tensor) -> Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        return tensor.to(memory_format=self.memory_format) if tensor.dim() == 4 else tensor

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

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


def _as_is(batch):
    return batch
