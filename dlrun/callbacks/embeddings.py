"""The test split's latent codes in TensorBoard's embedding projector (the Projector tab), after the final test.

Each code is labelled with its sample's class (or target value), and image inputs are shown as thumbnails. The model
must offer encode(x) -> codes (N, latent_dim): model=autoencoder and model=vae do (the VAE's is the posterior mean);
task=autoencoder|vae add this callback as callbacks.embeddings. The projector files go to <run dir>/tensorboard:
projector_config.pbtxt and <step>/latent_codes/ (tensors.tsv, metadata.tsv, sprite.png).
"""

import torch
from torch import Tensor

from dlrun.callbacks.base import Callback
from dlrun.callbacks.tensorboard import tensorboard_writer
from dlrun.errors import ConfigError
from dlrun.models.layers import evaluating

TAG = "latent_codes"


class Embeddings(Callback):
    def __init__(self, *, max_samples: int = 2000):
        if max_samples < 1:
            raise ConfigError(f"callbacks.embeddings.max_samples = {max_samples}: must be at least 1; type 2000")
        self.max_samples = max_samples

    def on_fit_start(self, trainer) -> None:
        if not callable(getattr(trainer.network, "encode", None)):
            raise ConfigError(
                f"callbacks.embeddings: the model ({type(trainer.network).__name__}) gives no latent codes; "
                "type model=autoencoder or model=vae, or callbacks.embeddings=null"
            )

    def on_test_end(self, trainer, metrics: dict[str, float]) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        codes, inputs, targets = self._test_codes(trainer)
        class_names = trainer.data.spec.class_names
        labels = [class_names[t] if class_names else f"{t:g}" for t in targets.reshape(len(targets), -1)[:, 0].tolist()]
        thumbnails = _unit_range(inputs) if inputs.dim() == 4 else None
        # A writer of its own: the TensorBoard callback may already have closed its writer after the test.
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(writer.log_dir) as projector:
            projector.add_embedding(
                codes, metadata=labels, label_img=thumbnails, global_step=trainer.state.step, tag=TAG
            )

    @torch.no_grad()
    def _test_codes(self, trainer) -> tuple[Tensor, Tensor, Tensor]:
        """(codes, inputs, targets) of the first max_samples test samples, on the CPU."""
        network = trainer.network
        codes, inputs, targets, count = [], [], [], 0
        with evaluating(network):
            for batch_inputs, batch_targets in trainer.task.eval_batches("test"):  # all of it, also under torchrun
                batch_inputs = batch_inputs[: self.max_samples - count]
                codes.append(network.encode(batch_inputs).float().cpu())
                inputs.append(batch_inputs.float().cpu())
                targets.append(batch_targets[: len(batch_inputs)].cpu())
                count += len(batch_inputs)
                if count >= self.max_samples:
                    break
        return torch.cat(codes), torch.cat(inputs), torch.cat(targets)


def _unit_range(images: Tensor) -> Tensor:
    """Images scaled to [0, 1] together (standardised inputs are not), as the projector's thumbnails want."""
    low, high = images.min(), images.max()
    return (images - low) / (high - low).clamp_min(1e-8)
