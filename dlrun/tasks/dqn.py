"""Deep Q-learning (DQN) on a gymnasium environment with discrete actions (dataset=environment, env=cartpole).

The Q-network is the task's model (model=mlp): observations in, one value per action out. Every training step is
one environment step, epsilon-greedy, into a replay buffer; after learning_starts steps, every train_every steps,
a minibatch of transitions makes one TD update of the criterion (Huber) between Q(s, a) and
r + gamma * max_a' Q_target(s', a') (with double_dqn=true: the Q-network picks a', the target network values it). Every
target_update_every steps the target network moves towards the Q-network (tau = 1 copies it). Episodes cut short
by a time limit (truncated) are bootstrapped like any other step; only a terminal state ends the return.

Validation and test play greedy episodes (no exploration) and report their mean return, its spread and the mean
length. A checkpoint keeps the replay buffer, the target network and the step count (so the epsilon schedule goes
on); the episode under way when training stopped is not kept: a resumed run starts a new one.
"""

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from dlrun.data.environment import EnvironmentData
from dlrun.distributed import World
from dlrun.errors import ConfigError
from dlrun.tasks.base import Task
from dlrun.tasks.replay import ReplayBuffer
from dlrun.validation.values import is_number

MAX_GREEDY_STEPS = 100_000  # a greedy episode ends here when the environment sets no time limit of its own


class DQNTask(Task):
    manual_optimization = True  # training_step steps the environment and updates when it is time

    def __init__(
        self,
        *,
        model: nn.Module,
        criterion: nn.Module,
        gamma: float = 0.99,
        buffer_size: int = 50_000,
        batch_size: int = 128,
        learning_starts: int = 1000,
        train_every: int = 1,
        target_update_every: int = 1,
        tau: float = 0.005,
        epsilon_start: float = 1.0,
        epsilon_end: float = 0.05,
        epsilon_decay_steps: int = 10_000,
        double_dqn: bool = False,
    ):
        if World.from_env().distributed:
            raise ConfigError(
                "task = dqn: plays one environment in one process; start it with dlrun, not torchrun "
                "(a GPU of its own is plenty for it)"
            )
        _check_settings(
            gamma=gamma,
            buffer_size=buffer_size,
            batch_size=batch_size,
            learning_starts=learning_starts,
            train_every=train_every,
            target_update_every=target_update_every,
            tau=tau,
            epsilon_start=epsilon_start,
            epsilon_end=epsilon_end,
            epsilon_decay_steps=epsilon_decay_steps,
        )
        self.model = model  # the Q-network
        self.criterion = criterion
        self.gamma = gamma
        self.buffer_size, self.batch_size = buffer_size, batch_size
        self.learning_starts, self.train_every = learning_starts, train_every
        self.target_update_every, self.tau = target_update_every, tau
        self.epsilon_start, self.epsilon_end, self.epsilon_decay_steps = epsilon_start, epsilon_end, epsilon_decay_steps
        self.double_dqn = double_dqn
        self.steps = 0  # environment steps taken in training: the epsilon and update schedules follow it
        # Made in setup, once the data and device are known:
        self.data: EnvironmentData | None = None
        self.device = torch.device("cpu")
        self.target_model: nn.Module | None = None  # outside self.model: model.pt and best.pt hold the Q-network alone
        self.buffer: ReplayBuffer | None = None
        self.observation: Tensor | None = None  # the current training episode's observation; None: start one
        self.episode_return, self.episode_length = 0.0, 0
        self.env_seeded = False  # whether this process has seeded the training environment

    # -- the trainer's hooks ---------------------------------------------------------------------------

    def setup(self, data, device: torch.device) -> None:
        if not isinstance(data, EnvironmentData):
            raise ConfigError(
                "task = dqn: plays a gymnasium environment, not a dataset; type experiment=dqn (env=cartpole, or "
                "env=acrobot with it), without dataset="
            )
        if any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in self.model.modules()):
            raise ConfigError(
                "model.batch_norm = true: DQN acts on one observation at a time; type model.batch_norm=false"
            )
        with torch.no_grad():
            outputs = self.model(data.observe(data.env.observation_space.sample()).to(device)[None]).shape
        if tuple(outputs) != (1, data.num_actions):
            raise ConfigError(
                f"model: gives outputs of shape {list(outputs)[1:]} for one observation of {data.env_id}; the "
                f"Q-network needs one value per action ([{data.num_actions}]): type model=mlp"
            )
        if device.type == "cpu":
            # A small network's steps gain nothing from more threads; they lose to the threads' coordination: a
            # CartPole step took 1.07 ms on one thread, 1.34 ms on two (an idle 2-core machine), 45 ms under load.
            # This sets the process's torch threads (later runs in the same process keep the setting).
            torch.set_num_threads(1)
        self.data, self.device = data, device
        self.target_model = copy.deepcopy(self.model).requires_grad_(False).eval()
        # The tensors the target update pairs, listed once: it runs every step, and loading weights keeps them.
        self.target_tensors = [list(self.target_model.parameters()), list(self.model.parameters())]
        self.target_buffers = list(zip(self.target_model.buffers(), self.model.buffers(), strict=True))
        self.buffer = ReplayBuffer(self.buffer_size, data.spec.in_shape, device)
        self.observation, self.env_seeded = None, False  # a resumed run's interrupted episode is not kept either

    def configure_optimizers(self, build_optimizer: Callable) -> dict[str, torch.optim.Optimizer]:
        return {"model": build_optimizer(params=list(self.model.parameters()))}

    def training_step(self, batch: tuple[Tensor], optimize: Callable) -> dict[str, Tensor | float]:
        """One epsilon-greedy environment step into the replay buffer, then a TD update and a target-network update
        when their turns come."""
        if self.observation is None:
            self._start_episode()
        epsilon = self.epsilon()
        action = self._act(self.observation, epsilon)
        raw, reward, terminated, truncated, _ = self.data.env.step(self.data.action(action))
        next_observation = self.data.observe(raw).to(self.device)
        self.buffer.add(self.observation, action, float(reward), next_observation, bool(terminated))
        self.steps += 1
        self.episode_return += float(reward)
        self.episode_length += 1
        metrics: dict[str, Tensor | float] = {"epsilon": epsilon}
        if terminated or truncated:
            metrics |= {"episode_return": self.episode_return, "episode_length": self.episode_length}
            self.observation = None
        else:
            self.observation = next_observation
        if self.steps >= self.learning_starts and self.steps % self.train_every == 0:
            loss = self._td_loss(*self.buffer.sample(self.batch_size))
            optimize(loss, "model")
            metrics["loss"] = loss.detach()
        if self.steps % self.target_update_every == 0:
            self._update_target()
        return metrics

    @torch.no_grad()
    def evaluation_step(self, batch: tuple[Tensor]) -> dict[str, Tensor]:
        """One greedy episode from the batch's seed: output its return, target its length."""
        episode_return, length = self._greedy_episode(int(batch[0]))
        return {"output": torch.tensor([episode_return]), "target": torch.tensor([length])}

    def metric_names(self) -> list[str]:
        return ["return", "return_std", "length"]

    def compute_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        returns = outputs.double().cpu()
        return {
            "return": float(returns.mean()),
            "return_std": float(returns.std(correction=0)),
            "length": float(targets.double().mean()),
        }

    def state_dict(self) -> dict:
        return {"steps": self.steps, "target_model": self.target_model.state_dict(), "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self.target_model.load_state_dict(state["target_model"])
        self.buffer.load_state_dict(state["buffer"])

    # -- the algorithm -------------------------------------------------------------------------------

    def epsilon(self) -> float:
        """The chance of a random action now: linear from epsilon_start to epsilon_end over epsilon_decay_steps."""
        progress = min(1.0, self.steps / self.epsilon_decay_steps)
        return self.epsilon_start + progress * (self.epsilon_end - self.epsilon_start)

    def _start_episode(self) -> None:
        # The first episode after setup or a resume is seeded by the run's seed and the step count (every resume from
        # one checkpoint plays the same episodes); later ones go on with the environment's own random state.
        raw, _ = self.data.env.reset(seed=None if self.env_seeded else self.data.seed + self.steps)
        self.env_seeded = True
        self.observation = self.data.observe(raw).to(self.device)
        self.episode_return, self.episode_length = 0.0, 0

    def _act(self, observation: Tensor, epsilon: float) -> int:
        if torch.rand(()).item() < epsilon:
            return int(torch.randint(self.data.num_actions, ()))
        return self._greedy_action(observation)

    @torch.no_grad()
    def _greedy_action(self, observation: Tensor) -> int:
        return int(self.model(observation[None]).argmax(dim=1))

    def _td_loss(self, observations, actions, rewards, next_observations, terminated) -> Tensor:
        q_values = self.model(observations).gather(1, actions[:, None]).squeeze(1)
        with torch.no_grad():
            next_q_values = self.target_model(next_observations)
            if self.double_dqn:
                next_actions = self.model(next_observations).argmax(dim=1, keepdim=True)
                next_values = next_q_values.gather(1, next_actions).squeeze(1)
            else:
                next_values = next_q_values.max(dim=1).values
            targets = rewards + self.gamma * (1.0 - terminated) * next_values.float()
        return self.criterion(q_values.float(), targets)

    @torch.no_grad()
    def _update_target(self) -> None:
        """target <- tau * Q + (1 - tau) * target; tau = 1 copies the Q-network (a hard update)."""
        targets, onlines = self.target_tensors
        if self.tau == 1.0:
            torch._foreach_copy_(targets, onlines)
        else:
            torch._foreach_lerp_(targets, onlines, self.tau)  # one call for all tensors: it runs every step
        for target, online in self.target_buffers:
            target.copy_(online)

    def _greedy_episode(self, seed: int) -> tuple[float, int]:
        env = self.data.eval_env
        raw, _ = env.reset(seed=seed)
        episode_return, length, done = 0.0, 0, False
        while not done and length < MAX_GREEDY_STEPS:
            action = self._greedy_action(self.data.observe(raw).to(self.device))
            raw, reward, terminated, truncated, _ = env.step(self.data.action(action))
            episode_return += float(reward)
            length += 1
            done = terminated or truncated
        return episode_return, length


def _check_settings(**settings) -> None:
    """Every impossible task.* value at once, each with what to type."""
    rules = {  # key: (allowed, requirement, example, whether it must be a whole number)
        "gamma": (lambda v: 0 <= v <= 1, "must be in [0, 1]", "0.99", False),
        "tau": (lambda v: 0 < v <= 1, "must be in (0, 1]", "0.005", False),
        "epsilon_start": (lambda v: 0 <= v <= 1, "must be in [0, 1]", "1.0", False),
        "epsilon_end": (lambda v: 0 <= v <= 1, "must be in [0, 1]", "0.05", False),
        "buffer_size": (lambda v: v >= 1, "must be at least 1", "50000", True),
        "batch_size": (lambda v: v >= 1, "must be at least 1", "128", True),
        "learning_starts": (lambda v: v >= 0, "must be at least 0", "1000", True),
        "train_every": (lambda v: v >= 1, "must be at least 1", "1", True),
        "target_update_every": (lambda v: v >= 1, "must be at least 1", "1", True),
        "epsilon_decay_steps": (lambda v: v >= 1, "must be at least 1", "10000", True),
    }
    problems = []
    for key, value in settings.items():
        allowed, requirement, example, whole = rules[key]
        if not is_number(value) or (whole and value != int(value)) or not allowed(value):
            kind = "a whole number" if whole else "a number"
            problems.append(f"task.{key} = {value}: {requirement} ({kind}); type task.{key}={example}")
    if problems:
        raise ConfigError(*problems)
