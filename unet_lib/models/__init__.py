"""The architectures of the book, one per file; shared pieces live in :mod:`unet_lib.models.blocks`.

The measuring functions live in :mod:`unet_lib.measure` and are re-exported here, so that
``from unet_lib.models import UNet, count_parameters`` keeps working.
"""
from ..measure import count_conv_layers, count_macs, count_parameters, latency_ratios, time_ratios
from .fcn import FCN
from .unet import UNet
from .unet3plus import UNet3Plus
from .unet_plusplus import UNetPlusPlus

__all__ = ["FCN", "UNet", "UNetPlusPlus", "UNet3Plus", "count_parameters", "count_conv_layers", "count_macs",
           "latency_ratios", "time_ratios"]
