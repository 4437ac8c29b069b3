"""``keras.ops.conv_transpose`` arguments -> ConvTransposeSpec (ValueError for bad ones)."""
from __future__ import annotations

from convt.compiler.spec import ConvTransposeSpec

from .keras_geometry import (keras_pads, standardize_data_format, standardize_padding,
                             standardize_tuple)


def op_geometry(input_shape, kernel_shape, strides=1, padding="valid", output_padding=None,
                data_format=None, dilation_rate=1):
    """Validated geometry: dict of spec fields, plus ``out_spatial`` (may hold zeros)."""
    input_shape, kernel_shape = tuple(input_shape), tuple(kernel_shape)
    if len(input_shape) not in (3, 4, 5):
        raise ValueError(f"`inputs` must have rank 3, 4 or 5 (1D, 2D, 3D with batch and "
                         f"channels). Received inputs.shape={input_shape}")
    if len(kernel_shape) != len(input_shape):
        raise ValueError(f"`kernel` must have the rank of `inputs` ({len(input_shape)}): "
                         f"shape kernel_spatial + (out_channels, in_channels). Received "
                         f"kernel.shape={kernel_shape}")
    rank = len(input_shape) - 2
    data_format = standardize_data_format(data_format)
    padding = standardize_padding(padding)
    strides = standardize_tuple(strides, rank, "strides")
    dilation = standardize_tuple(dilation_rate, rank, "dilation_rate")
    op = None if output_padding is None else standardize_tuple(
        output_padding, rank, "output_padding", allow_zero=True)
    if data_format == "channels_last":
        spatial, channels = input_shape[1:-1], input_shape[-1]
    else:
        spatial, channels = input_shape[2:], input_shape[1]
    if kernel_shape[-1] != channels:
        raise ValueError(f"The number of input channels of `inputs` ({channels}) must equal "
                         f"the last dimension of `kernel` ({kernel_shape[-1]}). Received "
                         f"inputs.shape={input_shape}, kernel.shape={kernel_shape}")
    for name, shape in (("inputs", input_shape), ("kernel", kernel_shape)):
        if any(d is not None and int(d) <= 0 for d in shape):
            raise ValueError(f"`{name}` dimensions must be positive. Received "
                             f"{name}.shape={shape}")
    k = kernel_shape[:-2]
    axes = [keras_pads(i, kk, s, d, padding, None if op is None else op[a])
            for a, (i, kk, s, d) in enumerate(zip(spatial, k, strides, dilation))]
    return dict(
        in_spatial=tuple(spatial), in_channels=channels, out_channels=kernel_shape[-2],
        kernel=tuple(k), strides=strides, dilation=dilation,
        pads_begin=tuple(a[0] for a in axes), pads_end=tuple(a[1] for a in axes),
        output_padding=tuple(a[2] for a in axes), layout=data_format,
    ), tuple(a[3] for a in axes)


def op_spec(input_shape, kernel_shape, *, batch=None, bias=False, activation="linear",
            dtype="float32", **kwargs):
    fields, _ = op_geometry(input_shape, kernel_shape, **kwargs)
    return ConvTransposeSpec(batch=batch, kernel_layout="spatial_oi", dtype=dtype, bias=bias,
                             activation=activation, **fields)
