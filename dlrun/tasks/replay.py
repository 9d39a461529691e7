"""A replay buffer: the last `capacity` transitions as tensors on one device, written in a circle, drawn uniformly."""

import torch
from torch import Tensor

from dlrun.errors import ConfigError

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated")


class ReplayBuffer:
    def __init__(self, capacity: int, observation_shape: list[int], device: torch.device):
        self.capacity = capacity
        self.observations = torch.zeros((capacity, *observation_shape), device=device)
        self.actions = torch.zeros(capacity, dtype=torch.long, device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.next_observations = torch.zeros((capacity, *observation_shape), device=device)
        self.terminated = torch.zeros(capacity, device=device)  # 1: the episode ended there; nothing follows
        self.position = 0  # where the next transition goes
        self.size = 0  # transitions held, up to capacity

    def __len__(self) -> int:
        return self.size

    def add(self, observation: Tensor, action: int, reward: float, next_observation: Tensor, terminated: bool) -> None:
        """One transition; when full, it overwrites the oldest."""
        index = self.position
        self.observations[index] = observation
        self.actions[index] = action
        self.rewards[index] = reward
        self.next_observations[index] = next_observation
        self.terminated[index] = terminated
        self.position = (index + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> tuple[Tensor, ...]:
        """batch_size transitions drawn uniformly with replacement (by the global torch generator, which
        checkpoints keep): observations, actions, rewards, next observations, terminated."""
        index = torch.randint(self.size, (batch_size,), device=self.actions.device)
        return tuple(getattr(self, name)[index] for name in FIELDS)

    def state_dict(self) -> dict:
        """The transitions held (the first `size` rows: the buffer fills from row 0) and where the next one goes."""
        return {"position": self.position, "size": self.size} | {
            name: getattr(self, name)[: self.size].clone() for name in FIELDS
        }

    def load_state_dict(self, state: dict) -> None:
        if state["size"] > self.capacity:
            raise ConfigError(
                f"task.buffer_size = {self.capacity}: the checkpoint's replay buffer holds {state['size']} "
                f"transitions; resume with task.buffer_size={state['size']} or more"
            )
        for name in FIELDS:
            getattr(self, name)[: state["size"]] = state[name].to(self.actions.device)
        self.size = state["size"]
        # A larger buffer than the checkpoint's continues after the transitions it holds.
        self.position = state["position"] if self.size == self.capacity else self.size
