"""The ``convt`` command line: compile, run, inspect, verify, check, bench, example.

Errors are one line on stderr and a non-zero exit (2: usage, 1: failure); ``--debug`` shows the
traceback. ``run``, ``inspect`` and ``verify`` use the runtime alone (they work under
``TVM_USE_RUNTIME_LIB=1``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


class UsageError(Exception):
    """A bad command line the parser cannot see (exit 2)."""


def _shape(text: str):
    """"1,3,64,64" -> (1, 3, 64, 64); "N", "?" or "None" leave a dimension open."""
    dims = []
    for d in text.split(","):
        d = d.strip()
        if d in ("N", "?", "None", "none", "-1"):
            dims.append(None)
        elif d.isdigit() and int(d) > 0:
            dims.append(int(d))
        else:
            raise UsageError(f"--input-shape {text!r}: each dimension must be a positive integer "
                             f"or N")
    return tuple(dims)


def _named(values):
    """["NAME=VALUE" or "VALUE", ...] -> [(NAME or None, VALUE)]."""
    out = []
    for v in values or []:
        name, sep, rest = v.partition("=")
        if sep and name and os.path.sep not in name:
            out.append((name, rest))
        else:
            out.append((None, v))
    return out


def _progress(items, desc):
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit="entry", disable=None, file=sys.stderr)


def _compile_keras(args, target):
    import convt
    from convt.frontends.keras_model import conv_layers, load_weights, read_json

    layers = conv_layers(read_json(args.source), args.source)
    shapes = dict(_named(args.input_shape))
    if None in shapes and len(layers) > 1:
        raise UsageError("--input-shape: this model has several ConvTranspose layers; name "
                         "each, LAYER=1,64,64,16")
    weights = load_weights(args.weights, [l.name for l, _ in layers]) if args.weights else {}
    modules = []
    for layer, declared in _progress(layers, "compiling"):
        text = shapes.get(layer.name, shapes.get(None))
        shape = _shape(text) if text else declared
        if shape is None:
            raise UsageError(f"layer {layer.name!r}: its input shape is not in the config; give "
                             f"--input-shape {layer.name}=N,H,W,C (batch axis included)")
        if layer.name in weights:
            layer.build(shape)
            layer.set_weights(weights[layer.name])
        modules.append(convt.compile(layer, input_shape=shape, target=target,
                                     knobs=_knobs(args)))
    return modules


def _knobs(args):
    if not args.knobs:
        return None
    try:
        knobs = json.loads(args.knobs)
    except json.JSONDecodeError as e:
        raise UsageError(f"--knobs: not valid JSON ({e})") from None
    if not isinstance(knobs, dict):
        raise UsageError("--knobs: a JSON object of knob names and values, e.g. '{\"tile_w\": 6}'")
    return knobs


def _target(text):
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"--target: not valid JSON ({e})") from None
    return text


def cmd_compile(args):
    import convt
    from convt.compiler import artifact
    from convt.compiler.targets import resolve

    if not os.path.isfile(args.source):
        raise FileNotFoundError(f"source {args.source!r} does not exist")
    target = resolve(_target(args.target))
    if args.source.endswith(".onnx"):
        shapes = {}
        for name, text in _named(args.input_shape):
            if name is None:
                raise UsageError("--input-shape for an ONNX model: NAME=1,3,64,64")
            shapes[name] = _shape(text)
        if args.weights:
            raise UsageError("--weights: an ONNX model carries its own weights")
        mod = convt.compile(args.source, target=target, input_shapes=shapes or None,
                            knobs=_knobs(args))
        modules = [mod]
    elif args.source.endswith(".json"):
        modules = _compile_keras(args, target)
    else:
        raise UsageError(f"source {args.source!r}: expected an ONNX model (.onnx) or a Keras "
                         f"config (.json)")
    entries = [m.entry() for m in (_progress(modules, "test vectors") if len(modules) > 1
                                   else modules)]
    source = modules[0].source if len(modules) == 1 else convt.api.source_info(
        "keras", open(args.source, "rb").read())
    out = artifact.write(args.output, target, entries, source)
    names = ", ".join(e.name for e in entries)
    print(f"{out}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} ({names}) for "
          f"{target.kind.name} {artifact.describe(target).get('cpu', '')}".rstrip())
    return 0


def _load_inputs(specs, signature):
    import numpy as np
    names = [i["name"] for i in signature["inputs"]]
    values = {}
    for position, (name, path) in enumerate(_named(specs)):
        if name is None:   # a bare FILE binds the first input, the next the second, ...
            if position >= len(names):
                raise UsageError(f"--input {path}: more inputs than the entry takes {names}")
            name = names[position]
        if name not in names:
            raise UsageError(f"--input {name}=...: no input {name!r}; inputs are {names}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"input file {path!r} does not exist")
        try:
            values[name] = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"input file {path!r} is not a .npy array ({e})") from None
    return values


def _entry(loaded, name):
    from convt.runtime import Bundle
    if isinstance(loaded, Bundle):
        if name is None:
            raise UsageError(f"this artifact holds entries {loaded.names}: choose one with "
                             f"--entry")
        return loaded[name]
    if name is not None and name not in loaded.artifact_manifest["entries"]:
        raise UsageError(f"--entry {name}: the artifact holds only "
                         f"{list(loaded.artifact_manifest['entries'])}")
    return loaded


def cmd_run(args):
    import numpy as np
    import convt

    runner = _entry(convt.load(args.artifact), args.entry)
    values = _load_inputs(args.input, runner.signature)
    out = runner(**values)
    outs = list(out) if isinstance(out, tuple) else [out]
    names = [o["name"] for o in runner.signature["outputs"]]
    if args.output.endswith(".npz"):
        np.savez(args.output, **dict(zip(names, outs)))
    elif len(outs) == 1:
        np.save(args.output, outs[0])
    else:
        raise UsageError(f"--output {args.output}: the entry has {len(outs)} outputs {names}; "
                         f"write them to a .npz")
    shapes = ", ".join(f"{n} {tuple(o.shape)}" for n, o in zip(names, outs))
    print(f"{args.output}: {shapes}")
    return 0


def _manifest_text(man):
    t = man["target"]
    lines = [f"format       {man['format']} v{man['format_version']} (convt {man['convt_version']}"
             f", TVM {man['tvm_version']}), created {man['created']}",
             f"target       {t['kind']} {t.get('triple', '')} cpu={t.get('cpu', t.get('arch'))}"
             + (f" features={','.join(t['features'])}" if t.get("features") else "")]
    src = man.get("source") or {}
    if src:
        lines.append(f"source       {src.get('kind')} sha256 {src.get('sha256')}")
    for name, e in man["entries"].items():
        lines.append(f"entry {name!r} ({e['kind']})")
        sig = e["signature"]
        for io_, items in (("input ", sig["inputs"]), ("output", sig["outputs"])):
            for i in items:
                shape = "x".join("N" if d is None else str(d) for d in i["shape"])
                layout = f" {i['layout']}" if i.get("layout") else ""
                lines.append(f"  {io_} {i['name']}: {i['dtype']}[{shape}]{layout}")
        if e["kind"] == "kernel":
            sched = e.get("schedule", {})
            knobs = ", ".join(f"{k['name']}={k['value']}" for k in sched.get("knobs", []))
            lines.append(f"  schedule {sched.get('rule')}: {knobs}")
        else:
            lines.append(f"  convt kernels: {len(e.get('kernels', []))}")
        lines.append(f"  test vector: {'yes' if e.get('test_vector') else 'no'}")
    lines.append("members      " + ", ".join(f"{k} ({v[:12]})" for k, v in
                                              sorted(man["sha256"].items())))
    return "\n".join(lines)


def cmd_inspect(args):
    from convt.runtime import read_artifact
    manifest, _ = read_artifact(args.artifact)
    print(json.dumps(manifest, indent=1, sort_keys=True) if args.json
          else _manifest_text(manifest))
    return 0


def cmd_verify(args):
    import convt
    from convt.runtime import verify
    ok = True
    for name, err, passed in verify(convt.load(args.artifact)):
        shown = "no test vector" if err is None else f"max |error| {err:.2e}"
        print(f"{name}: {'ok' if passed else 'FAILED'} ({shown})")
        ok &= passed
    return 0 if ok else 1


def _json_arg(text, what):
    """JSON from the command line, or from the file it names."""
    if os.path.isfile(text):
        with open(text) as f:
            text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{what}: not valid JSON, nor a file holding it ({e})") from None


def _check_spec(args):
    """The spec ``convt check`` builds, from exactly one of --op, --layer, --spec."""
    given = [a for a in ("op", "layer", "spec") if getattr(args, a)]
    if len(given) != 1:
        raise UsageError("give one of --op, --layer or --spec")
    if args.spec:
        from convt.compiler.spec import ConvTransposeSpec
        return ConvTransposeSpec.from_dict(_json_arg(args.spec, "--spec"))
    if args.op:
        from convt.frontends.keras_op import op_spec
        op = _json_arg(args.op, "--op")
        if not isinstance(op, dict) or "inputs" not in op or "kernel" not in op:
            raise UsageError('--op: a JSON object with the shapes "inputs" and "kernel" and '
                             'keras.ops.conv_transpose\'s other arguments')
        shape = tuple(op.pop("inputs"))
        return op_spec(shape, tuple(op.pop("kernel")), batch=shape[0], **op)
    from convt.frontends.keras_layers import deserialize
    layer = deserialize(_json_arg(args.layer, "--layer"))
    if not args.input_shape:
        raise UsageError("--layer needs --input-shape, e.g. 1,64,64,16 (batch axis included)")
    return layer.compile_parts(_shape(args.input_shape[0]))[0]


def cmd_check(args):
    from convt import schedules
    from convt.compiler.targets import resolve
    from convt.tools.check import check_spec

    spec = _check_spec(args)
    target = resolve(_target(args.target))
    knobs = _knobs(args) or {}
    if args.every_rule:
        if "rule" in knobs:
            raise UsageError("--every-rule forces each rule in turn: leave rule out of --knobs")
        names = [r.name for r in schedules.applicable(spec, schedules.describe(target))]
    else:
        names = [knobs.get("rule")]
    ok = True
    for name in names:
        forced = {**knobs, "rule": name} if name else knobs
        checked = check_spec(spec, target, forced, batch=args.batch, seed=args.seed)
        print(checked.summary())
        ok &= checked.ok
    return 0 if ok else 1


def build_parser():
    parser = argparse.ArgumentParser(prog="convt", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("compile", help="compile an ONNX model or a Keras config to an artifact")
    c.add_argument("source", help="model.onnx, or a Keras layer config / model.to_json() .json")
    c.add_argument("--target", default="x86", help="x86, arm, cuda[:sm_XX], or a TVM target as "
                   "JSON")
    c.add_argument("-o", "--output", required=True, help="the artifact to write (.convt)")
    c.add_argument("--weights", help="Keras weights: .npz (<layer>/kernel, <layer>/bias) or "
                   ".weights.h5; without it, the config's initializers")
    c.add_argument("--input-shape", action="append", metavar="[NAME=]DIMS",
                   help="e.g. 1,64,64,16 or LAYER=N,64,64,16 (Keras: batch axis included) or "
                   "INPUT=1,3,64,64 (ONNX); N leaves a dimension open")
    c.add_argument("--knobs", help="schedule knobs as JSON, e.g. '{\"tile_w\": 6}'")
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run an artifact on .npy inputs")
    r.add_argument("artifact")
    r.add_argument("--input", action="append", required=True, metavar="[NAME=]FILE.npy",
                   help="a bare FILE binds the first input")
    r.add_argument("--output", required=True, metavar="FILE.npy|FILE.npz")
    r.add_argument("--entry", help="which entry of a several-entry artifact")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("inspect", help="print an artifact's manifest")
    i.add_argument("artifact")
    i.add_argument("--json", action="store_true", help="the manifest as JSON")
    i.set_defaults(func=cmd_inspect)

    v = sub.add_parser("verify", help="run the artifact's embedded test vector on this host")
    v.add_argument("artifact")
    v.set_defaults(func=cmd_verify)

    k = sub.add_parser("check", help="build one layer for this host and run it on guarded "
                                     "buffers against a float64 reference")
    k.add_argument("--op", help="keras.ops.conv_transpose arguments as JSON (or a file), with "
                   "the shapes of inputs and kernel: '{\"inputs\": [1, 1, 13, 1], \"kernel\": "
                   "[5, 4, 3, 1], \"strides\": 2}'")
    k.add_argument("--layer", help="a Keras layer entry {\"class_name\", \"config\"} as JSON "
                   "(or a file); needs --input-shape")
    k.add_argument("--spec", help="a ConvTransposeSpec as JSON (or a file), as "
                   "`convt inspect --json` shows it")
    k.add_argument("--input-shape", action="append", metavar="DIMS",
                   help="the layer's input shape, batch axis included")
    k.add_argument("--target", default="x86", help="an x86 target this host runs (default: "
                   "this host's CPU), e.g. '{\"kind\": \"llvm\", \"mcpu\": \"haswell\"}'")
    k.add_argument("--knobs", help="schedule knobs as JSON; \"rule\" forces a rule")
    k.add_argument("--every-rule", action="store_true", help="check every rule that applies")
    k.add_argument("--batch", type=int, default=None, help="images when the batch is open "
                   "(default 2)")
    k.add_argument("--seed", type=int, default=0, help="of the random inputs")
    k.set_defaults(func=cmd_check)

    sub.add_parser("example", help="compile, export, load and run the bundled Keras example"
                   ).set_defaults(func=lambda a: __import__(
                       "convt.tools.example", fromlist=["run"]).run())
    b = sub.add_parser("bench", help="benchmark the suite against onnxruntime, OpenVINO and "
                                      "PyTorch")
    from .bench import add_arguments
    add_arguments(b)
    b.set_defaults(func=lambda a: __import__("convt.tools.bench", fromlist=["run"]).run(a))
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        if args.debug:
            raise
        print(f"convt {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001  (every failure is one line unless --debug)
        if args.debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError):
            msg = str(e.args[0]) if e.args else msg
        print(f"convt {args.cmd}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
