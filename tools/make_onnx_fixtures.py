"""Generate tests/fixtures/onnx/*.onnx + *.npz: small models exported from PyTorch.

Needs ``pip install torch==2.13.0 onnxscript`` (generation time only; the tests read the
committed files). Each model is exported twice, with random weights and random BatchNorm
statistics and a dynamic batch axis: by the TorchScript exporter (opset 17, ``<name>.onnx``) and
by the torch.export-based exporter that is PyTorch's default since 2.9 (opset 20,
``<name>_dynamo.onnx``; it folds BatchNorm into the ConvTranspose itself). The .npz holds the
inputs (``in_<name>``) and PyTorch's outputs (``out_<name>``) for a batch of 2.
"""
import os

import numpy as np
import onnx
import torch
from torch import nn

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "onnx")
IR_VERSION = 10  # onnxruntime 1.31 reads ir_version <= 13


def _randomize(model):
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.3)
    return model.eval()


class DCGANGenerator(nn.Module):
    def __init__(self, nz=16, ngf=8):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class UNetDecoder(nn.Module):
    """Two decoder stages: up-sample, concatenate the skip, convolve; two outputs."""

    def __init__(self):
        super().__init__()
        self.up1 = nn.ConvTranspose2d(32, 16, 2, 2)
        self.conv1 = nn.Sequential(nn.Conv2d(32, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(16, 8, 2, 2)
        self.conv2 = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, bottleneck, skip1, skip2):
        x = self.conv1(torch.cat([self.up1(bottleneck), skip1], 1))
        x = self.conv2(torch.cat([self.up2(x), skip2], 1))
        return self.head(x), x


class HiFiGANUpsampler(nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = nn.Conv1d(20, 32, 7, padding=3)
        self.ups = nn.ModuleList([nn.ConvTranspose1d(32, 16, 16, 8, padding=4),
                                  nn.ConvTranspose1d(16, 8, 4, 2, padding=1)])
        self.post = nn.Conv1d(8, 1, 7, padding=3)

    def forward(self, mel):
        x = self.pre(mel)
        for up in self.ups:
            x = up(nn.functional.leaky_relu(x, 0.1))
        return torch.tanh(self.post(nn.functional.leaky_relu(x, 0.1)))


class Decoder3D(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose3d(8, 6, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm3d(6), nn.ReLU(),
            nn.ConvTranspose3d(6, 2, (3, 2, 3), stride=(1, 2, 2), padding=(1, 0, 1),
                               output_padding=(0, 1, 1)))

    def forward(self, x):
        return self.net(x)


class GroupedDepthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.grouped = nn.ConvTranspose2d(8, 12, 3, stride=2, padding=1, output_padding=1, groups=4)
        self.act = nn.PReLU(12)
        self.depthwise = nn.ConvTranspose2d(12, 12, 4, stride=2, padding=1, groups=12)

    def forward(self, x):
        return self.depthwise(self.act(self.grouped(x)))


class Dilated(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.ConvTranspose2d(6, 5, 3, stride=1, padding=2, dilation=2)
        self.b = nn.ConvTranspose2d(5, 4, 3, stride=2, padding=1, dilation=3, output_padding=1)

    def forward(self, x):
        return self.b(nn.functional.hardsigmoid(self.a(x)))


MODELS = {
    "dcgan_generator": (DCGANGenerator(), {"z": (2, 16, 1, 1)}),
    "unet_decoder": (UNetDecoder(), {"bottleneck": (2, 32, 4, 4), "skip1": (2, 16, 8, 8),
                                     "skip2": (2, 8, 16, 16)}),
    "hifigan_upsampler": (HiFiGANUpsampler(), {"mel": (2, 20, 12)}),
    "decoder3d": (Decoder3D(), {"x": (2, 8, 3, 4, 3)}),
    "grouped_depthwise": (GroupedDepthwise(), {"x": (2, 8, 5, 6)}),
    "dilated": (Dilated(), {"x": (2, 6, 7, 5)}),
}


def export(name, model, shapes, dynamo):
    model = _randomize(model)
    torch.manual_seed(1)
    inputs = {k: torch.randn(s) for k, s in shapes.items()}
    with torch.no_grad():
        outs = model(*inputs.values())
    outs = outs if isinstance(outs, tuple) else (outs,)
    out_names = [f"y{i}" for i in range(len(outs))]
    name = f"{name}_dynamo" if dynamo else name
    path = os.path.join(OUT, f"{name}.onnx")
    if dynamo:
        batch = torch.export.Dim("N", min=1, max=128)
        prog = torch.onnx.export(model, tuple(inputs.values()), dynamo=True,
                                 input_names=list(inputs), output_names=out_names,
                                 dynamic_shapes={k: {0: batch} for k in inputs})
        m = prog.model_proto
    else:
        dyn = {k: {0: "N"} for k in list(inputs) + out_names}
        torch.onnx.export(model, tuple(inputs.values()), path, dynamo=False, opset_version=17,
                          input_names=list(inputs), output_names=out_names, dynamic_axes=dyn)
        m = onnx.load(path)
    m.ir_version = IR_VERSION
    onnx.save(m, path)
    np.savez(os.path.join(OUT, f"{name}.npz"),
             **{f"in_{k}": v.numpy() for k, v in inputs.items()},
             **{f"out_{k}": v.numpy() for k, v in zip(out_names, outs)})
    print(name, os.path.getsize(path), "bytes", [n.op_type for n in m.graph.node])


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for dynamo in (False, True):
        for name, (model, shapes) in MODELS.items():
            export(name, model, shapes, dynamo)
