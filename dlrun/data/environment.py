"""A gymnasium environment as a run's data (dataset=environment, played by task=dqn).

EnvironmentData stands where a DataModule stands for the trainer and dlrun/build.py: a training "batch" is one
environment step (steps_per_epoch of them an epoch, each carrying its step index), which the task plays itself
(dlrun/tasks/dqn.py); a validation or test batch is one greedy episode, carrying the seed it starts from
(validation and test episodes draw from different seed ranges, the same episodes at every validation).
Observations are float tensors of the observation space's shape (a Discrete observation is one-hot encoded); the
actions are those of a Discrete action space, their names the class names.
"""

import contextlib
import io
import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import gymnasium
import torch
from torch import Tensor

from dlrun.data.spec import DataSpec
from dlrun.errors import ConfigError

VAL_SEEDS = 1_000_000  # validation episode i starts from seed VAL_SEEDS + i
TEST_SEEDS = 2_000_000  # test episode i from TEST_SEEDS + i
PLAIN_FAMILIES = ("gymnasium.envs.classic_control.", "gymnasium.envs.toy_text.")  # need no extra package


@dataclass
class EnvironmentData:
    env_id: str
    env: gymnasium.Env  # the training environment: the task steps it
    eval_env: gymnasium.Env  # a second instance for greedy episodes, so that evaluating leaves training's episode be
    class_names: list[str]  # one per action
    steps_per_epoch: int
    eval_episodes: int
    test_episodes: int
    seed: int = 0  # the training environment's first episode starts from this seed

    resident_on = None  # its batches stay on the CPU: the trainer places them

    @property
    def spec(self) -> DataSpec:
        """One observation as the network sees it; the actions as classes (one Q-value each)."""
        return DataSpec(in_shape=observation_shape(self.env.observation_space), class_names=list(self.class_names))

    @property
    def num_actions(self) -> int:
        return len(self.class_names)

    def observe(self, observation) -> Tensor:
        """An observation of the environment as a float tensor (Discrete: one-hot)."""
        space = self.env.observation_space
        if isinstance(space, gymnasium.spaces.Discrete):
            return torch.nn.functional.one_hot(torch.tensor(int(observation) - space.start), int(space.n)).float()
        return torch.as_tensor(observation, dtype=torch.float32)

    def action(self, index: int):
        """What env.step takes for the network's output index."""
        return index + int(self.env.action_space.start)

    def num_batches(self, split: str) -> int:
        return {"train": self.steps_per_epoch, "val": self.eval_episodes, "test": self.test_episodes}[split]

    def batches(self, split: str, epoch: int = 0, *, start: int = 0) -> Iterator[tuple[Tensor]]:
        """train: an empty batch per environment step of the epoch (the task steps the environment itself); val,
        test: (episode seed,) per greedy episode. start: the batches already done (a resumed epoch)."""
        if split == "train":
            yield from itertools.repeat((), self.steps_per_epoch - start)
            return
        first = VAL_SEEDS if split == "val" else TEST_SEEDS
        yield from ((seed[None],) for seed in torch.arange(first + start, first + self.num_batches(split)))

    def fits_on(self, device: torch.device) -> bool:
        return True  # nothing is kept: the environment makes the data

    def to(self, device: torch.device) -> "EnvironmentData":
        return self  # the environment runs on the CPU; the task moves observations to the device

    def shard(self, rank: int, world_size: int) -> "EnvironmentData":
        return self  # one process plays (task=dqn refuses torchrun)

    def preprocessing(self) -> dict:
        """Kept in checkpoints: the actions' names and the environment; observations are used as they come."""
        return {**self.spec.as_dict(), "input_mean": None, "input_std": None, "resize": None, "env_id": self.env_id}


def load(
    *,
    name: str = "environment",  # the dataset option, as config messages name it
    env: dict | None,
    in_shape: list[int] | str = "auto",
    num_classes: int | str = "auto",
    steps_per_epoch: int = 2500,
    eval_episodes: int = 10,
    test_episodes: int = 20,
    seed: int = 0,
) -> EnvironmentData:
    if not env:
        raise ConfigError(
            f"env: dataset={name} needs an environment; type env=cartpole or env=acrobot (then env.id=<gymnasium id> "
            "plays any other)"
        )
    for key, value in (
        ("steps_per_epoch", steps_per_epoch),
        ("eval_episodes", eval_episodes),
        ("test_episodes", test_episodes),
    ):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"dataset.{key} = {value}: must be a whole number >= 1; type dataset.{key}=10")
    train_env, eval_env = make(env), make(env)
    data = EnvironmentData(
        env_id=env["id"],
        env=train_env,
        eval_env=eval_env,
        class_names=action_names(train_env),
        steps_per_epoch=steps_per_epoch,
        eval_episodes=eval_episodes,
        test_episodes=test_episodes,
        seed=seed,
    )
    measured = {
        "in_shape": (in_shape, data.spec.in_shape, "observation shape"),
        "num_classes": (num_classes, data.num_actions, "actions"),
    }
    for key, (value, actual, what) in measured.items():
        if value != "auto" and value != actual:
            raise ConfigError(f"dataset.{key} = {value}: {env['id']} has {actual} ({what}); type dataset.{key}=auto")
    return data


def make(env: dict) -> gymnasium.Env:
    """gymnasium.make(env.id); a user's mistake (unknown id, missing package, continuous actions) is a ConfigError."""
    env_id, max_episode_steps = env.get("id"), env.get("max_episode_steps")
    if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
        raise ConfigError(
            f"env.max_episode_steps = {max_episode_steps}: must be a whole number >= 1, or null for the environment's "
            "own limit; type env.max_episode_steps=null"
        )
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # some environments greet on stdout
            made = gymnasium.make(str(env_id), max_episode_steps=max_episode_steps)
    except gymnasium.error.DependencyNotInstalled as error:
        raise ConfigError(f"env.id = {env_id}: needs a package that is not installed: {error}") from error
    except gymnasium.error.Error as error:
        raise ConfigError(f"env.id = {env_id}: {error} Type one of {', '.join(playable_ids())}") from error
    if not isinstance(made.action_space, gymnasium.spaces.Discrete):
        raise ConfigError(
            f"env.id = {env_id}: its actions are {type(made.action_space).__name__}, not a finite set; DQN picks one "
            f"of a few actions: type one of {', '.join(playable_ids())}"
        )
    observation_shape(made.observation_space, env_id)
    return made


def observation_shape(space: gymnasium.Space, env_id: str | None = None) -> list[int]:
    if isinstance(space, gymnasium.spaces.Box):
        return list(space.shape)
    if isinstance(space, gymnasium.spaces.Discrete):
        return [int(space.n)]
    raise ConfigError(
        f"env.id = {env_id}: its observations are {type(space).__name__}; dlrun reads Box and Discrete ones: "
        f"type one of {', '.join(playable_ids())}"
    )


def action_names(env: gymnasium.Env) -> list[str]:
    """The environment's own names for its actions where it has them (Atari's), else action 0, action 1, ..."""
    meanings = getattr(env.unwrapped, "get_action_meanings", None)
    count = int(env.action_space.n)
    names = list(meanings()) if callable(meanings) else []
    return names if len(names) == count else [f"action {i}" for i in range(count)]


def playable_ids() -> list[str]:
    """Registered environments that need no extra package and that dlrun can play (discrete actions, Box or
    Discrete observations): what an error message offers instead."""
    ids = []
    for env_id, spec in gymnasium.envs.registry.items():
        if not (isinstance(spec.entry_point, str) and spec.entry_point.startswith(PLAIN_FAMILIES)):
            continue
        try:
            with warnings.catch_warnings():  # an old version's deprecation notice
                warnings.simplefilter("ignore")
                made = gymnasium.make(env_id)
        except gymnasium.error.Error:
            continue
        if isinstance(made.action_space, gymnasium.spaces.Discrete) and isinstance(
            made.observation_space, gymnasium.spaces.Box | gymnasium.spaces.Discrete
        ):
            ids.append(env_id)
        made.close()
    return ids
