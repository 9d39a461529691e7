"""Character-level language modelling (dataset=text): every step predicts the next character.

The model maps characters (N, T) to logits (N, T, vocabulary) and offers step(tokens, state) -> (logits, state),
to continue a text one character at a time (dlrun/models/rnn.py; sampling: sample() below). The loss is the
criterion (cross-entropy) over every character; a model that learned nothing scores ln(vocabulary size).
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn

from dlrun.errors import ConfigError
from dlrun.losses import with_weight_penalty
from dlrun.models.layers import evaluating
from dlrun.tasks.base import Task


class LanguageModelTask(Task):
    def __init__(
        self,
        *,
        model: nn.Module,
        criterion: nn.Module,
        problem: str,
        num_classes: int | None = None,
        l1: float = 0.0,
        l2: float = 0.0,
    ):
        if problem != "classification":
            raise ConfigError(f"loss: the next character is a class, not a {problem} target; type loss=cross_entropy")
        if not callable(getattr(model, "step", None)):
            raise ConfigError(
                f"model: {type(model).__name__} cannot continue a text one character at a time; a character-level "
                "language model needs model=lstm | gru | rnn"
            )
        self.model = model
        self.criterion = criterion
        self.num_classes = num_classes
        self.l1, self.l2 = l1, l2

    def configure_optimizers(self, build_optimizer: Callable) -> dict[str, torch.optim.Optimizer]:
        return {"model": build_optimizer(params=[p for p in self.model.parameters() if p.requires_grad])}

    def training_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        inputs, targets = batch
        logits = self.model(inputs)
        loss = with_weight_penalty(self._loss(logits, targets), self.model, l1=self.l1, l2=self.l2)
        return {"loss": loss, "output": logits.argmax(dim=-1), "target": targets}  # predictions: logits are large

    def training_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, tuple[Tensor, int]]:
        return {"acc": (outputs.eq(targets).count_nonzero(), targets.numel())}

    def evaluation_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        """The output is the predicted (most likely) next characters, not the logits: a split's worth of logits
        (characters x vocabulary) would be large and the loss is already summed here."""
        inputs, targets = batch
        logits = self.model(inputs)
        return {"loss": self._loss(logits, targets), "output": logits.argmax(dim=-1), "target": targets}

    def metric_names(self) -> list[str]:
        return ["loss", "acc"]

    def compute_metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        return {"acc": float((outputs.cpu().long() == targets.cpu()).float().mean())}

    def _loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self.criterion(logits.transpose(1, 2), targets)  # (N, vocabulary, T) against (N, T)


@torch.no_grad()
def sample(
    model: nn.Module, prompt: Tensor, length: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """length characters drawn one at a time after the prompt (1-D tokens on the model's device); temperature > 0
    scales the logits: below 1 favours likely characters, above 1 flattens the distribution."""
    with evaluating(model):
        logits, state = model.step(prompt[None])
        drawn = []
        for _ in range(length):
            probabilities = torch.softmax(logits[0, -1].float().cpu() / temperature, dim=-1)
            token = torch.multinomial(probabilities, 1, generator=generator)
            drawn.append(token)
            logits, state = model.step(token[None].to(prompt.device), state)
    return torch.cat(drawn) if drawn else prompt.new_zeros(0)
