"""Keras 3 transposed-convolution layers (``convt.layers.Conv2DTranspose`` ...)."""
from convt.frontends.keras_layers import (  # noqa: F401
    BaseConvTranspose, Conv1DTranspose, Conv2DTranspose, Conv3DTranspose,
    Convolution1DTranspose, Convolution2DTranspose, Convolution3DTranspose, deserialize)
