"""What the commands that use a trained checkpoint (`dlrun-export`, `dlrun-predict`, `dlrun-sample`) take in.

trained.py: the checkpoint's model, rebuilt from the config and data spec stored in it, with the preprocessing that
    standardises new inputs with the training statistics (so a command needs no overrides).
files.py: new raw inputs, one row per input, each of the dataset's in_shape, read by kind:
    images.py    image files (.png, .jpg, ...) or a folder of them, scaled to the training pixel range;
    csv_rows.py  a .csv of feature rows: one input per row, prod(in_shape) numeric columns, an optional header row;
    tensors.py   a .npy or .pt tensor file: shape [N, *in_shape] (N inputs) or [*in_shape] (one input).
Then Trained.prepare does what training did to every batch: the stored standardisation and, where the dataset's
transforms resized images, the same resize.
"""

from dlrun.inputs.files import Inputs, collect, read
from dlrun.inputs.messages import describe_shape
from dlrun.inputs.trained import Trained, add_config_dir_argument, check_checkpoint, load_trained

__all__ = [
    "Inputs",
    "Trained",
    "add_config_dir_argument",
    "check_checkpoint",
    "collect",
    "describe_shape",
    "load_trained",
    "read",
]
