"""The architectures of the book, one per file; shared pieces live in :mod:`unet_lib.models.blocks`."""
from .fcn import FCN
from .unet import UNet
from .unet_plusplus import UNetPlusPlus
from .unet3plus import UNet3Plus

__all__ = ["FCN", "UNet", "UNetPlusPlus", "UNet3Plus", "count_parameters", "count_conv_layers"]


def count_parameters(model, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_conv_layers(model) -> int:
    """Number of convolutional layers (Conv2d and ConvTranspose2d), as the 2015 paper counts them."""
    from torch import nn
    return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())
