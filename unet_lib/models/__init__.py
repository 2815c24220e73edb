"""The architectures of the book, one per file; shared pieces live in :mod:`unet_lib.models.blocks`."""
from .unet import UNet

__all__ = ["UNet", "count_parameters", "count_conv_layers"]


def count_parameters(model, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_conv_layers(model) -> int:
    """Number of convolutional layers (Conv2d and ConvTranspose2d), as the 2015 paper counts them."""
    from torch import nn
    return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())
