"""unet_lib: the tested reference code of the U-Net course book.

Import submodules explicitly (``from unet_lib import models, metrics``); importing
the package has no side effects.
"""
__version__ = "0.1.0"
