"""What the model, the loss and the task need to know of a dataset, measured from the data when it is built.

A dataset builder returns its splits with a DataSpec (dlrun/data/module.py); dlrun/build.py hands the model its
in_shape and num_outputs from it, and the task its classes and target statistics, so that nothing measured is
written back into the config. Checkpoints keep it (as_dict), and dlrun-predict, dlrun-export and dlrun-sample
rebuild the model from it.
"""

from dataclasses import asdict, dataclass, field, fields

from torch import Tensor


@dataclass(frozen=True)
class DataSpec:
    in_shape: list[int]  # one model input, after the dataset's transforms (an image resized per batch: its new size)
    class_names: list[str] = field(default_factory=list)  # the classes, the actions, or a text's vocabulary; [] else
    tokens: bool = False  # the inputs are indices into class_names (a text's characters)
    target_mean: Tensor | None = None  # regression: targets are standardised, these undo it
    target_std: Tensor | None = None
    pixel_max: float | None = None  # images: the value of a white pixel before standardisation (digits: 16)

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) or None

    def num_outputs(self, problem: str | None) -> int:
        """The model's outputs for a loss of this problem: one logit for binary, one per class (action, character),
        else one value."""
        return 1 if problem == "binary" or not self.class_names else len(self.class_names)

    def model_arguments(self, problem: str | None) -> dict:
        """What dlrun passes to a model builder besides its config: in_shape, num_outputs, and a text's vocab_size."""
        supplied = {"in_shape": list(self.in_shape), "num_outputs": self.num_outputs(problem)}
        return {**supplied, "vocab_size": len(self.class_names)} if self.tokens else supplied

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> "DataSpec":
        """The spec as_dict stored (in a checkpoint's preprocessing)."""
        return cls(**{item.name: state[item.name] for item in fields(cls)})

    @classmethod
    def stored_in(cls, state: dict) -> bool:
        return all(item.name in state for item in fields(cls))
