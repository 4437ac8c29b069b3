"""Generate tests/fixtures/models/: real models with ConvTranspose, from public packages, in ONNX.

Each model is built from its package's own code with a small configuration and random weights
(random BatchNorm statistics too, so that no BatchNorm is an identity), put in eval mode and
exported twice: by the TorchScript exporter (``dynamo=False``, opset 17, ``<name>.onnx``) and by
the torch.export-based exporter, PyTorch's default (``<name>_dynamo.onnx``). Both get a dynamic
batch axis where the exporter manages one; a model that the dynamo exporter cannot make dynamic is
exported there with a static batch, and the manifest says so. Every file holds its weights inline
(no external data) and has ``ir_version`` 10.

Written, in ``--out`` (default tests/fixtures/models):
  <name>.onnx, <name>_dynamo.onnx  the two exports
  <name>.npz                       inputs (``in_<input>``) and PyTorch's outputs (``out_<output>``)
                                   for a batch of 2, from seeded random inputs
  manifest.json                    one entry per .onnx: package and version, constructor, input
                                   shapes, size, ConvTranspose count, op types, and onnxruntime's
                                   max|ort - torch| / max|torch| on the .npz inputs
  .gitignore                       the files over 5 MB (and the .npz of a model with both), which
                                   are regenerated, not committed

Needs, in a virtual environment of its own (generation time only; the tests read the files):
  pip install torch==2.13.0            # this spelling: the CPU build
  pip install --no-deps torchvision==0.28.0
  pip install -c constraints.txt onnx==1.23.2 onnxruntime onnxscript monai==1.6.1 \\
      segmentation-models-pytorch==0.6.0 "ultralytics>=8.4,<8.5" speechbrain==1.1.2 diffusers
where constraints.txt holds ``torch==2.13.0`` and ``torchvision==0.28.0`` so that no package
replaces the CPU torch. See ``install_shims`` for the two compiled extensions that do not load.

Usage: python tools/make_model_fixtures.py [--only NAME ...] [--out DIR]
"""
import argparse
import importlib.metadata
import json
import os
import sys
import time
import types

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "models")
IR_VERSION = 10  # as tests/fixtures/onnx; the dynamo exporter writes a newer one
OPSET = 17       # TorchScript exporter
BATCH = 2
LARGE = 5 * 1024 * 1024


def install_shims():
    """Let torchvision and torchaudio import beside the CPU torch.

    PyPI's torchvision 0.28 and torchaudio 2.11 wheels carry compiled extensions built for another
    torch, which fail to load here. torchvision's Python code only needs the schemas of the two
    ops it registers fake kernels for at import time (``torchvision::nms``, ``torchvision::qnms``);
    torchaudio (imported by speechbrain, never run) needs an ``_extension`` module that says the
    extension is absent. Neither op is used by any model exported here.
    """
    import torch

    if not hasattr(torch.ops.torchvision, "nms"):
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        install_shims.torchvision_lib = lib  # the schemas live as long as the Library

    def absent(*args, **kwargs):
        raise RuntimeError("the torchaudio extension is not available")

    ext = types.ModuleType("torchaudio._extension")
    ext._IS_TORCHAUDIO_EXT_AVAILABLE = False
    ext._IS_ALIGN_AVAILABLE = False
    ext._load_lib = lambda name: False
    ext._check_cuda_version = lambda: None
    ext.fail_if_no_align = lambda func: absent
    sys.modules.setdefault("torchaudio._extension", ext)
    os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics: no update checks


# --- helpers ---------------------------------------------------------------------------------

def make(cls, *args, **kwargs):
    """``cls(*args, **kwargs)`` and its call spelled out, for the manifest."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return cls(*args, **kwargs), f"{cls.__module__}.{cls.__qualname__}({', '.join(parts)})"


def randomize(model, seed=7):
    """Eval mode, and random statistics and affine terms for every BatchNorm."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval()


def flatten(out):
    """A model's output (tensor, tuple, list, dict or dataclass of them) as a tuple of tensors."""
    import torch

    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, dict):
        out = list(out.values())
    elif hasattr(out, "to_tuple"):  # diffusers' BaseOutput
        out = out.to_tuple()
    return tuple(t for o in out for t in flatten(o))


def flat_module(model):
    """``model`` as a module whose outputs are a flat tuple of tensors."""
    import torch

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, *inputs):
            return flatten(self.inner(*inputs))

    return Flat().eval()


# --- the models ------------------------------------------------------------------------------
# Each builder returns (module, {input name: shape}, constructor). Shapes have the batch of 2.

MODELS = {}  # name -> (builder, PyPI package, output names or None for y0, y1, ...)


def model(package, outputs=None):
    """Register the decorated builder under its function name."""
    def register(builder):
        MODELS[builder.__name__] = (builder, package, outputs)
        return builder
    return register


@model("monai")
def monai_basicunet2d():
    from monai.networks.nets import BasicUNet
    net, ctor = make(BasicUNet, spatial_dims=2, in_channels=1, out_channels=2,
                     features=(8, 8, 16, 32, 64, 8), upsample="deconv")
    return net, {"image": (BATCH, 1, 64, 64)}, ctor


@model("monai")
def monai_unet3d():
    from monai.networks.nets import UNet
    net, ctor = make(UNet, spatial_dims=3, in_channels=1, out_channels=3, channels=(8, 16, 32),
                     strides=(2, 2), num_res_units=1, norm="batch")
    return net, {"image": (BATCH, 1, 32, 32, 32)}, ctor


@model("monai")
def monai_unetr():
    from monai.networks.nets import UNETR
    net, ctor = make(UNETR, in_channels=1, out_channels=2, img_size=(32, 32, 32), feature_size=8,
                     hidden_size=48, mlp_dim=96, num_heads=4, norm_name="batch")
    return net, {"image": (BATCH, 1, 32, 32, 32)}, ctor


@model("monai")
def monai_dynunet2d():
    from monai.networks.nets import DynUNet
    net, ctor = make(DynUNet, spatial_dims=2, in_channels=3, out_channels=2,
                     kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2],
                     filters=[8, 16, 32, 64], norm_name="batch", res_block=True)
    return net, {"image": (BATCH, 3, 48, 48)}, ctor


@model("segmentation-models-pytorch")
def smp_linknet():
    import segmentation_models_pytorch as smp
    net, ctor = make(smp.Linknet, encoder_name="tu-mobilenetv3_small_050", encoder_weights=None,
                     in_channels=3, classes=2)
    return net, {"image": (BATCH, 3, 96, 96)}, ctor


@model("torchvision", outputs=["mask_logits"])
def torchvision_maskrcnn_mask_head():
    """Mask R-CNN's mask branch (MaskRCNNHeads, then MaskRCNNPredictor with its ConvTranspose2d),
    run on pooled RoI features: the part of the detector that holds the ConvTranspose."""
    from torch import nn
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    heads, c1 = make(MaskRCNNHeads, 32, [32, 32, 32, 32], 1, norm_layer=nn.BatchNorm2d)
    predictor, c2 = make(MaskRCNNPredictor, 32, 32, 5)
    return nn.Sequential(heads, predictor), {"roi_features": (BATCH, 32, 14, 14)}, f"{c1}, {c2}"


@model("ultralytics", outputs=["detections", "protos"])
def yolov8n_seg():
    from ultralytics.nn.tasks import SegmentationModel
    net, ctor = make(SegmentationModel, "yolov8n-seg.yaml", nc=8, verbose=False)
    head = net.model[-1]
    # as ultralytics' own exporter does: outputs (detections, protos), and anchors made from the
    # input's shape on every call (a cached shape would pin the batch)
    head.export = head.dynamic = True
    return net, {"images": (BATCH, 3, 128, 128)}, f"{ctor}; .model[-1].export = .dynamic = True"


@model("ultralytics", outputs=["detections", "protos"])
def yolov8_seg_slim():
    """YOLOv8-seg at a quarter of yolov8n's width (the n scale is ultralytics' smallest; at
    13 MB it is not committed): the same graph, 1 MB."""
    from ultralytics.nn.tasks import SegmentationModel, yaml_model_load
    cfg = yaml_model_load("yolov8n-seg.yaml")
    cfg["scales"] = {"n": [0.33, 0.0625, 1024]}
    cfg["scale"] = "n"
    net = SegmentationModel(cfg, nc=8, verbose=False)
    head = net.model[-1]
    head.export = head.dynamic = True
    ctor = ("ultralytics.nn.tasks.SegmentationModel(yolov8n-seg.yaml with scales n = "
            "[0.33, 0.0625, 1024], nc=8, verbose=False)")
    return net, {"images": (BATCH, 3, 128, 128)}, f"{ctor}; .model[-1].export = .dynamic = True"


@model("speechbrain", outputs=["waveform"])
def speechbrain_hifigan():
    from speechbrain.lobes.models.HifiGAN import HifiganGenerator
    net, ctor = make(HifiganGenerator, in_channels=20, out_channels=1, resblock_type="1",
                     resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                     resblock_kernel_sizes=[3, 7, 11], upsample_kernel_sizes=[16, 16, 4, 4],
                     upsample_initial_channel=32, upsample_factors=[8, 8, 2, 2])
    return net, {"mel": (BATCH, 20, 16)}, ctor


@model("diffusers", outputs=["reconstruction"])
def diffusers_oobleck_vae():
    from diffusers import AutoencoderOobleck
    net, ctor = make(AutoencoderOobleck, encoder_hidden_size=16, downsampling_ratios=[2, 4, 4],
                     channel_multiples=[1, 2, 4], decoder_channels=8, decoder_input_channels=8,
                     audio_channels=1)
    return net, {"waveform": (BATCH, 1, 512)}, ctor


@model("diffusers", outputs=["denoised"])
def diffusers_unet1d():
    """The temporal U-Net of the Janner et al. diffuser (its up blocks up-sample by ConvTranspose1d)."""
    from diffusers import UNet1DModel
    net, ctor = make(UNet1DModel, in_channels=6, out_channels=6, block_out_channels=(16, 32, 64),
                     down_block_types=("DownResnetBlock1D",) * 3,
                     up_block_types=("UpResnetBlock1D",) * 2, mid_block_type="MidResTemporalBlock1D",
                     out_block_type="OutConv1DBlock", time_embedding_type="positional",
                     use_timestep_embedding=True, flip_sin_to_cos=False, freq_shift=1.0,
                     act_fn="mish", norm_num_groups=8, layers_per_block=1, sample_size=32)
    return net, {"sample": (BATCH, 6, 32), "timestep": (BATCH,)}, ctor


# --- export and check ------------------------------------------------------------------------

def random_inputs(shapes, seed=1):
    import torch

    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def export_torchscript(module, inputs, in_names, out_names, path):
    import torch

    dyn = {k: {0: "batch"} for k in in_names + out_names}
    torch.onnx.export(module, tuple(inputs.values()), path, dynamo=False, opset_version=OPSET,
                      input_names=in_names, output_names=out_names, dynamic_axes=dyn)
    import onnx
    return onnx.load(path)


def export_dynamo(module, inputs, in_names, out_names):
    """The torch.export-based export, with a dynamic batch if it takes one, else a static one."""
    import torch

    args = tuple(inputs.values())
    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        prog = torch.onnx.export(module, args, dynamo=True, input_names=in_names,
                                 output_names=out_names,
                                 dynamic_shapes={"inputs": tuple({0: batch} for _ in args)})
        return prog.model_proto
    except Exception as e:  # noqa: BLE001 (any failure: fall back to a static batch)
        cause = e.__cause__ or e
        print(f"  dynamic batch failed ({type(cause).__name__}: {first_line(cause)}); "
              "exporting static", flush=True)
    prog = torch.onnx.export(module, args, dynamo=True, input_names=in_names,
                             output_names=out_names)
    return prog.model_proto


def strip_metadata(m):
    """Drop the dynamo exporter's per-node metadata (source stack traces with local paths, which
    would make each run's file differ), in the graph and every nested graph."""
    import onnx

    def walk(graph):
        for n in graph.node:
            del n.metadata_props[:]
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                for g in a.graphs:
                    walk(g)

    walk(m.graph)
    return m


def first_line(exc):
    return (str(exc).strip().splitlines() or [""])[0][:300]


def op_types(m):
    """Node op types of a model, its functions and nested subgraphs, with repeats."""
    import onnx

    def walk(graph):
        for n in graph.node:
            yield n.op_type
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from walk(a.g)
                for g in a.graphs:
                    yield from walk(g)

    ops = list(walk(m.graph))
    for f in m.functions:
        ops += [n.op_type for n in f.node]
    return ops


def ort_rel_err(path, feeds, expected):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)
    err = 0.0
    for g, e in zip(got, expected):
        scale = float(np.abs(e).max()) or 1.0
        err = max(err, float(np.abs(g.astype(np.float64) - e).max()) / scale)
    return err


def build(name, out_dir):
    """Export one model with both exporters; return its manifest entries."""
    import onnx
    import torch

    builder, package, out_names = MODELS[name]
    torch.manual_seed(0)
    net, shapes, ctor = builder()
    randomize(net)
    module = flat_module(net)
    inputs = random_inputs(shapes)
    with torch.no_grad():
        outs = module(*inputs.values())
    out_names = out_names or [f"y{i}" for i in range(len(outs))]
    in_names = list(inputs)
    assert len(out_names) == len(outs), (name, len(outs))
    assert not set(in_names) & set(out_names), "an input and an output share a name"
    feeds = {k: v.numpy() for k, v in inputs.items()}
    expected = [o.numpy() for o in outs]
    np.savez(os.path.join(out_dir, f"{name}.npz"), **{f"in_{k}": v for k, v in feeds.items()},
             **{f"out_{k}": v for k, v in zip(out_names, expected)})

    entries = []
    for exporter in ("torchscript", "dynamo"):
        file = f"{name}.onnx" if exporter == "torchscript" else f"{name}_dynamo.onnx"
        path = os.path.join(out_dir, file)
        t0 = time.time()
        if exporter == "torchscript":
            m = export_torchscript(module, inputs, in_names, out_names, path)
        else:
            m = export_dynamo(module, inputs, in_names, out_names)
        # what the file says, not what was asked: an exporter can pin the batch without a word
        dynamic = all(i.type.tensor_type.shape.dim[0].dim_param for i in m.graph.input)
        m = strip_metadata(m)
        m.ir_version = IR_VERSION
        onnx.save(m, path, save_as_external_data=False)
        ops = op_types(m)
        entry = {
            "name": name, "file": file, "exporter": exporter, "package": package,
            "package_version": importlib.metadata.version(package), "constructor": ctor,
            "inputs": {k: list(v.shape) for k, v in inputs.items()},
            "outputs": {k: list(v.shape) for k, v in zip(out_names, expected)},
            "opset": next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
            "dynamic_batch": dynamic, "size_bytes": os.path.getsize(path),
            "ort_rel_err": ort_rel_err(path, feeds, expected),
            "convtranspose_count": ops.count("ConvTranspose"), "op_types": sorted(set(ops)),
        }
        assert entry["convtranspose_count"] > 0, f"{file} has no ConvTranspose"
        print(f"  {file}: {entry['size_bytes']} bytes, {entry['convtranspose_count']} ConvTranspose, "
              f"ort rel err {entry['ort_rel_err']:.2e}, dynamic batch {dynamic}, "
              f"{time.time() - t0:.1f}s", flush=True)
        entries.append(entry)
    return entries


def write_manifest(out_dir, entries):
    """Merge ``entries`` into manifest.json (an --only run keeps the other models' entries)."""
    path = os.path.join(out_dir, "manifest.json")
    old = []
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    done = {e["file"] for e in entries}
    merged = sorted([e for e in old if e["file"] not in done] + entries,
                    key=lambda e: (e["name"], e["exporter"] != "torchscript"))
    with open(path, "w") as f:
        json.dump(merged, f, indent=1)
        f.write("\n")
    large = {e["file"] for e in merged if e["size_bytes"] > LARGE}
    for name in {e["name"] for e in merged}:   # no export committed: nor its inputs
        if all(e["file"] in large for e in merged if e["name"] == name):
            large.add(f"{name}.npz")
    with open(os.path.join(out_dir, ".gitignore"), "w") as f:
        f.write("# over 5 MB: made by tools/make_model_fixtures.py, not committed\n")
        f.writelines(f"{file}\n" for file in sorted(large))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(MODELS), metavar="NAME",
                        help="models to make (default: all): " + ", ".join(MODELS))
    parser.add_argument("--out", default=OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    install_shims()
    os.makedirs(args.out, exist_ok=True)
    entries, failed = [], []
    for name in args.only or MODELS:
        print(name, flush=True)
        t0 = time.time()
        try:
            entries += build(name, args.out)
        except Exception as e:  # noqa: BLE001 (report it, go on with the next model)
            failed.append(name)
            print(f"  FAILED: {type(e).__name__}: {first_line(e)}", flush=True)
        print(f"  {time.time() - t0:.1f}s", flush=True)
    write_manifest(args.out, entries)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
