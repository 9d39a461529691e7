"""Text sampled from a character-level language model after each epoch: to TensorBoard (the Text tab, tag
`samples`) and to the terminal. dataset=text adds it as callbacks.text_samples."""

import torch
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from dlrun.callbacks.base import Callback
from dlrun.callbacks.tensorboard import tensorboard_writer
from dlrun.data.module import Split
from dlrun.errors import ConfigError
from dlrun.tasks.language_model import sample

PROMPT_FROM_VAL = 32  # characters of the validation text that start a sample when no prompt is given


class TextSamples(Callback):
    def __init__(
        self,
        *,
        length: int = 300,
        temperature: float = 0.8,
        prompt: str | None = None,
        every_n_epochs: int = 1,
        seed: int = 0,
        quiet: bool = False,
    ):
        if length < 1:
            raise ConfigError(f"callbacks.text_samples.length = {length}: must be at least 1; type 300")
        if not temperature > 0:
            raise ConfigError(
                f"callbacks.text_samples.temperature = {temperature}: must be > 0 (lower: likelier characters); "
                "type callbacks.text_samples.temperature=0.8"
            )
        if every_n_epochs < 1:
            raise ConfigError(f"callbacks.text_samples.every_n_epochs = {every_n_epochs}: must be at least 1")
        self.length, self.temperature, self.prompt = length, temperature, prompt
        self.every_n_epochs, self.seed = every_n_epochs, seed
        self.console = Console(quiet=quiet)
        self.samples: list[str] = []  # every sample so far, prompt included
        self.prompt_tokens: torch.Tensor | None = None

    def on_fit_start(self, trainer) -> None:
        self.prompt_tokens = self._prompt_tokens(trainer.data.spec.class_names, first_input(trainer.data.val))

    def on_epoch_end(self, trainer, metrics: dict[str, float]) -> None:
        epoch = trainer.state.epoch  # completed epochs
        if epoch % self.every_n_epochs and epoch != trainer.max_epochs:
            return
        vocabulary = trainer.data.spec.class_names
        model = trainer.network  # the task's model, unwrapped from DistributedDataParallel
        prompt = self.prompt_tokens
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(self.seed + epoch)
        drawn = sample(model, prompt.to(device), self.length, temperature=self.temperature, generator=generator)
        text = "".join(vocabulary[i] for i in torch.cat([prompt, drawn.cpu()]).tolist())
        self.samples.append(text)
        writer = tensorboard_writer(trainer)
        if writer is not None:
            # TensorBoard renders text as Markdown: a code block keeps the line breaks and spacing.
            writer.add_text("samples", f"```\n{text}\n```", trainer.state.step)
        title = f"sample after epoch {epoch} (temperature {self.temperature:g})"
        self.console.print(Panel(Text(text), title=title, expand=False))

    def _prompt_tokens(self, vocabulary: list[str], val_input: torch.Tensor) -> torch.Tensor:
        if self.prompt is None:
            return val_input[:PROMPT_FROM_VAL].cpu()
        index = {character: i for i, character in enumerate(vocabulary)}
        unknown = sorted({character for character in self.prompt if character not in index})
        if unknown or not self.prompt:
            raise ConfigError(
                f"callbacks.text_samples.prompt = {self.prompt!r}: "
                + (f"{unknown!r} never occur in the text" if unknown else "empty")
                + "; type a prompt of the text's characters, or callbacks.text_samples.prompt=null"
            )
        return torch.tensor([index[character] for character in self.prompt], dtype=torch.long)


def first_input(split: Split) -> torch.Tensor:
    """The input of a split's first sample, in memory (an inputs tensor and a targets tensor) or streamed (a Dataset
    of (input, target))."""
    if isinstance(split, tuple):
        inputs, _targets = split
        return inputs[0]
    first, _target = split[0]
    return first
