"""Image grids in TensorBoard (the Images tab) after each epoch: what the task shows of its images, such as inputs
beside their reconstructions (autoencoder, VAE), samples from the prior (VAE) or from fixed noise (GAN).

The task offers image_grids(num_images) -> {tag: images (N, C, H, W)}; task=autoencoder|vae|gan add this callback as
callbacks.image_grids. Each grid is scaled to its own minimum and maximum.
"""

import torch
from torchvision.utils import make_grid

from dlrun.callbacks.base import Callback
from dlrun.callbacks.tensorboard import tensorboard_writer
from dlrun.errors import ConfigError
from dlrun.models.layers import evaluating


class ImageGrids(Callback):
    def __init__(self, *, num_images: int = 64, images_per_row: int = 8, every_n_epochs: int = 1):
        for key, value in (("num_images", num_images), ("images_per_row", images_per_row)):
            if value < 1:
                raise ConfigError(f"callbacks.image_grids.{key} = {value}: must be at least 1; type 8")
        if every_n_epochs < 1:
            raise ConfigError(f"callbacks.image_grids.every_n_epochs = {every_n_epochs}: must be at least 1")
        self.num_images, self.images_per_row, self.every_n_epochs = num_images, images_per_row, every_n_epochs

    def on_epoch_end(self, trainer, metrics: dict[str, float]) -> None:
        epoch = trainer.state.epoch  # completed epochs
        writer = tensorboard_writer(trainer)
        if writer is None or (epoch % self.every_n_epochs and epoch != trainer.max_epochs):
            return
        with evaluating(trainer.network), torch.no_grad():
            grids = trainer.task.image_grids(self.num_images)
        for tag, images in grids.items():
            grid = make_grid(images.detach().float().cpu(), nrow=self.images_per_row, normalize=True, pad_value=1.0)
            writer.add_image(tag, grid, trainer.state.step)
