"""Recurrent networks (Elman RNN, LSTM, GRU) over what the dataset gives:

- images [C, H, W] are read row by row: H steps of C*W features (digits: 8 of 8; MNIST: 28 of 28);
- sequences [T, F] (dataset=timeseries): T steps of F features;
- characters [T] with a vocabulary (dataset=text): embedded, and every step predicts the next character.
Classification and regression read the last layer's final hidden state (both directions when bidirectional).
"""

import functools
from collections.abc import Sequence

from torch import Tensor, nn

from dlrun.errors import ConfigError
from dlrun.models.layers import check_dropout

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNet(nn.Module):
    def __init__(
        self,
        *,
        cell: str,
        in_shape: Sequence[int],
        num_outputs: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        vocab_size: int | None = None,
        embedding_dim: int = 64,
    ):
        super().__init__()
        check_dropout(dropout)
        if hidden_size < 1 or num_layers < 1:
            raise ConfigError(
                f"model.hidden_size = {hidden_size}, model.num_layers = {num_layers}: both must be at least 1; "
                "type model.hidden_size=128 model.num_layers=1"
            )
        self.layout, features = _layout(cell, in_shape, vocab_size)
        if self.layout == "tokens" and bidirectional:
            raise ConfigError(
                "model.bidirectional = true: a language model must not read the characters it predicts; "
                "type model.bidirectional=false"
            )
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if self.layout == "tokens" else None
        self.recurrent = CELLS[cell](
            input_size=embedding_dim if self.embedding is not None else features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            # torch applies dropout between stacked layers only; one layer gets it before the head below.
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            batch_first=True,
        )
        self.directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * self.directions, num_outputs)

    def forward(self, inputs: Tensor) -> Tensor:
        """(N, num_outputs), or per character (N, T, vocabulary) for a language model."""
        if self.layout == "tokens":
            logits, _ = self.step(inputs)
            return logits
        # Images (N, C, H, W) -> (N, H, C*W): row r is step r, with its pixels in every channel.
        steps = inputs.permute(0, 2, 1, 3).flatten(2) if self.layout == "images" else inputs
        _, state = self.recurrent(steps)
        hidden = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        last_layer = hidden[-self.directions :].transpose(0, 1).flatten(1)  # (N, directions * hidden_size)
        return self.head(self.dropout(last_layer))

    def step(self, tokens: Tensor, state=None) -> tuple[Tensor, object]:
        """A language model's next-character logits (N, T, vocabulary) for tokens (N, T), continuing from state
        (None at the start); returns the state after the last character, for sampling one character at a time."""
        outputs, state = self.recurrent(self.embedding(tokens), state)
        return self.head(self.dropout(outputs)), state


def _layout(cell: str, in_shape: Sequence[int], vocab_size: int | None) -> tuple[str, int]:
    """How the inputs become steps: (images | sequence | tokens, features per step)."""
    if vocab_size is not None:
        if len(in_shape) != 1:
            raise ConfigError(f"model={cell}: a vocabulary needs character sequences [T], not {list(in_shape)}")
        return "tokens", 0
    if len(in_shape) == 3:
        return "images", in_shape[0] * in_shape[2]
    if len(in_shape) == 2:
        return "sequence", in_shape[1]
    raise ConfigError(
        f"model={cell} needs sequences [steps, features] or images [channels, height, width], but the dataset gives "
        f"in_shape={list(in_shape)}; type model=mlp, or pick a dataset=digits|mnist|timeseries|text"
    )


# The builders conf/model/ names: RecurrentNet's keywords, one cell each.
rnn = functools.partial(RecurrentNet, cell="rnn")
lstm = functools.partial(RecurrentNet, cell="lstm")
gru = functools.partial(RecurrentNet, cell="gru")
