"""The one module that touches TVM's compiler APIs (TE, TIR, s_tir, Relax, targets, build, export).

A TVM upgrade should change this file only. The runtime loader (``convt.runtime``) never imports
it: on a device only ``libtvm_runtime.so`` exists and ``import tvm.relax`` fails there.
"""
from __future__ import annotations

import re

import tvm
from tvm import te, tirx, relax  # noqa: F401  (re-exported for compute and relax wrappers)
import tvm.s_tir as s_tir
from tvm.target import Target, codegen  # noqa: F401

Schedule = s_tir.Schedule
ScheduleError = s_tir.ScheduleError
TVMError = RuntimeError   # what TVM's FFI raises (InternalError, ScheduleError) derives from it

# TE / TIR expression helpers used by compute.py and activations.py
var = te.var
placeholder = te.placeholder
compute = te.compute
reduce_axis = te.reduce_axis
te_sum = te.sum
floordiv = tirx.floordiv
floormod = tirx.floormod
select = tirx.Select
if_then_else = tirx.if_then_else
const = tirx.const
exp = tirx.exp
log = tirx.log
log1p = tirx.log1p
tanh = tirx.tanh
erf = tirx.erf
sqrt = tirx.sqrt
sigmoid = tirx.sigmoid
tmax = tirx.max
tmin = tirx.min
tabs = tirx.abs
all_of = tirx.all


def create_prim_func(tensors, unaligned=()):
    """TE -> schedulable PrimFunc with int64 indices (kept through the build: ``_build_context``).

    ``unaligned``: placeholders whose memory callers hand over as is (numpy aligns to 16 bytes;
    TVM assumes 64 and may emit aligned-only vector accesses). They are declared with element
    alignment, so the runtime can pass such arrays without a copy.
    """
    func = te.create_prim_func(tensors, index_dtype_override="int64")
    return _element_aligned(func, [t.name for t in unaligned]) if unaligned else func


def _element_aligned(func, names):
    """``func`` with the named parameter buffers declared ``align=<element bytes>``.

    TVM 0.27 offers no buffer substitution from Python (``specialize`` refuses an alignment
    change), so the signature of the printed TVMScript is edited and parsed back."""
    src = func.script()
    start = re.search(r"^def \w+\(", src, re.M).start()
    end = src.index("\n", start)
    sig = src[start:end]
    for name in names:
        at = sig.index(f"{name}: T.Buffer(") + len(f"{name}: T.Buffer")
        depth, i = 0, at
        while True:   # to the parenthesis closing T.Buffer(...)
            depth += {"(": 1, ")": -1}.get(sig[i], 0)
            if depth == 0:
                break
            i += 1
        dtype = re.search(r'"(\w+)"\s*$', sig[at:i]).group(1)
        sig = f"{sig[:i]}, align={dtype_bytes(dtype)}{sig[i:]}"
    parsed = tvm.script.from_source(src[:start] + sig + src[end:])
    return parsed.with_attrs(func.attrs) if func.attrs is not None else parsed


@tvm.instrument.pass_instrument
class _KeepInt64Indices:
    """Skips ``NarrowDataType``: with int32 indices LLVM cannot fold the constant offsets of a
    register tile's loads into addressing modes (each load re-sign-extends its own index: 3
    integer ops per FMA, measured 18 vs 47 GFLOP/s on FSRCNN's kernel)."""

    def should_run(self, mod, info):
        return info.name not in ("NarrowDataType", "tirx.NarrowDataType")


def _build_context():
    return tvm.transform.PassContext(opt_level=3, instruments=[_KeepInt64Indices()])


_LOWER_FOR_BOUNDS = ("CanonicalizeLoop", "LowerInitBlock", "PlanAndUpdateBufferAllocationLocation",
                     "ConvertBlocksToOpaque", "CompactBufferAllocation", "LowerMatchBuffer",
                     "StmtSimplify", "LowerOpaqueBlock")


def out_of_bounds(funcs: dict):
    """The first access of a scheduled PrimFunc that TVM's bound analysis finds outside its
    buffer (``s_tir.analysis.OOBChecker`` on the loops as lowered), or None. A static check:
    it reads loop ranges and guarding conditions, it runs nothing."""
    mod = ir_module(funcs)
    lower = tvm.transform.Sequential([getattr(s_tir.transform, p)() for p in _LOWER_FOR_BOUNDS])
    try:
        with tvm.transform.PassContext(opt_level=3):
            s_tir.analysis.OOBChecker()(lower(mod))
    except Exception as e:   # TVM reports it as an InternalError carrying the access
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        return lines[-1] if lines else type(e).__name__
    return None


def structural_equal(a, b) -> bool:
    import tvm_ffi
    return bool(tvm_ffi.structural_equal(a, b))


def get_block(sch, name):
    """Schedule block lookup (named ``get_sblock`` in TVM 0.27's s_tir)."""
    return sch.get_sblock(name)


def find_block(sch, name):
    """The block named ``name``, or None where scheduling removed it (inlined)."""
    try:
        return sch.get_sblock(name)
    except (ScheduleError, TVMError):
        return None


def root_block(sch):
    return sch.get_sblock(sch.mod["main"].body.block.name_hint)


def block_name(sch, block) -> str:
    return sch.get(block).name_hint


def block_kinds(sch, block) -> str:
    """The block's iterators as one letter each: S spatial, R reduction, O anything else."""
    return "".join({0: "S", 2: "R"}.get(int(iv.iter_type), "O") for iv in sch.get(block).iter_vars)


def const_extent(sch, loop):
    """A loop's extent as an int, or None when it is symbolic."""
    ext = sch.get(loop).extent
    return int(ext.value) if isinstance(ext, tirx.IntImm) else None


def host_cpu() -> str:
    return codegen.llvm_get_system_cpu()


def cpu_features(target: Target) -> set:
    with target:
        return set(codegen.llvm_get_cpu_features())


def vector_bits(target: Target) -> int:
    """SIMD register width from the target's features (LLVM's own query ignores ``mcpu``)."""
    feats = cpu_features(target)
    if "avx512f" in feats:
        return 512
    if "avx2" in feats or "avx" in feats:
        return 256
    return 128


def ir_module(funcs: dict):
    """IRModule of named PrimFuncs (each ``global_symbol`` set to its name)."""
    return tvm.IRModule({name: f.with_attr("global_symbol", name) for name, f in funcs.items()})


def build_tir(mod, target: Target):
    """Build a TIR-only IRModule (or PrimFunc) for ``target``."""
    with _build_context():
        return tvm.tirx.build(mod, target=target)


def build_relax(mod, target: Target, schedule_func=None, rules_out=None):
    """Compile a Relax module; constant subexpressions (weight packing of constant kernels) are
    evaluated first, on this host. ``schedule_func(prim_func) -> (scheduled, rule name)``
    gives the module convt's own pipeline (``graph_pipeline``, which fills ``rules_out``);
    without it TVM's default runs."""
    with _build_context():
        if schedule_func is None:
            return tvm.compile(relax.transform.FoldConstant()(mod), target=target)
        return tvm.compile(mod, target=target,
                           relax_pipeline=graph_pipeline(schedule_func, rules_out))


def mark_scheduled(func, rule: str):
    """A PrimFunc that fusion leaves alone (opaque) and scheduling passes over, named by rule."""
    return func.with_attr("op_pattern", 8).with_attr("tirx.is_scheduled", True) \
        .with_attr("convt.rule", rule)


def graph_pipeline(schedule_func, rules_out=None):
    """convt's Relax pipeline for CPU targets. TVM 0.27's default one (``tvm.compile``) only
    legalizes and lowers: no fusion, and no schedule for anything. This one fuses (FuseOps,
    FuseTIR) and then gives every PrimFunc not yet scheduled (convt's kernels are, see
    ``mark_scheduled``) the schedule of ``schedule_func``, recording its rule as ``convt.rule``.
    Reshapes become views before scheduling (``RewriteDataflowReshape`` reads the unscheduled
    pattern). Our own module pass rather than dlight's ``ApplyDefaultSchedule``, which cannot
    record which rule won. ``rules_out`` gets ``{PrimFunc name: convt.rule or None}``."""
    rules_out = {} if rules_out is None else rules_out

    @tvm.transform.module_pass(opt_level=0, name="ConvtScheduleGraph")
    def schedule_all(mod, _ctx):
        for gv, func in list(mod.functions_items()):
            if not isinstance(func, tirx.PrimFunc):
                continue
            attrs = dict(func.attrs) if func.attrs else {}
            if not int(attrs.get("tirx.is_scheduled", 0)):
                done, rule = schedule_func(func)
                mod[gv] = done.with_attr("tirx.is_scheduled", True).with_attr("convt.rule", rule)
                attrs["convt.rule"] = rule
            rules_out[gv.name_hint] = attrs.get("convt.rule")
        return mod

    rt = relax.transform
    return tvm.transform.Sequential([
        relax.backend.DispatchSampling(), relax.backend.DispatchSortScan(),
        rt.LegalizeOps(), rt.AnnotateTIROpPattern(), rt.FoldConstant(), rt.FuseOps(),
        rt.FuseTIR(), rt.RewriteDataflowReshape(), rt.DeadCodeElimination(), schedule_all,
        rt.ToNonDataflow(), rt.RemovePurityChecking(), rt.CallTIRRewrite(),
        rt.StaticPlanBlockMemory(), rt.LowerAllocTensor(), rt.KillAfterLastUse(),
        rt.LowerRuntimeBuiltin(), rt.ComputePrimValue(), rt.VMShapeLower(),
        rt.AttachGlobalSymbol()])


def cross_compiler(cxx: str):
    from tvm.support import cc
    return cc.cross_compiler(cxx)


def compile_cuda(code: str, arch: str, target_format: str = "fatbin"):
    from tvm.support import nvcc
    return nvcc.compile_cuda(code, target_format=target_format, arch=arch, compiler="nvcc")


def prim_func_script(mod) -> str:
    return mod.script()


def dtype_bytes(dtype: str) -> int:
    return tvm.DataType(dtype).bits // 8


def dtype_of(expr) -> str:
    """Element type of a TIR expression (``PrimExpr.ty`` in TVM 0.27; ``dtype`` before)."""
    ty = getattr(expr, "ty", None)
    return str(ty if ty is not None else expr.dtype)


# ---- Relax ONNX importer ------------------------------------------------------------------------
_IMPORT_LOCK = __import__("threading").Lock()


def onnx_importable_ops() -> set:
    """ONNX op types TVM's Relax importer converts."""
    from tvm.relax.frontend.onnx import onnx_frontend
    return set(onnx_frontend._get_convert_map()) | {"If", "Constant"}


def import_onnx(model, shape_dict, dtype_dict, overrides: dict):
    """``relax.frontend.onnx.from_onnx`` with some op types converted by our functions.

    ``overrides``: op type -> ``f(bb, inputs, attrs)`` returning a Relax expression. TVM 0.27's
    importer has no public hook for this, so its converter table is swapped for the duration of
    the call (under a lock); the importer's own prints and checker warnings are silenced
    because our callers report errors themselves.
    """
    import contextlib
    import io
    import warnings
    from tvm.relax.frontend.onnx import onnx_frontend as fe

    converters = {
        op: type(f"Convt{op}", (fe.OnnxOpConverter,), {
            "_impl_v1": classmethod(lambda cls, bb, inputs, attr, params, f=f: f(bb, inputs, attr))})
        for op, f in overrides.items()}
    original = fe._get_convert_map
    with _IMPORT_LOCK, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        fe._get_convert_map = lambda: {**original(), **converters}
        try:
            return fe.from_onnx(model, shape_dict=shape_dict, dtype_dict=dtype_dict)
        finally:
            fe._get_convert_map = original


def relax_shape(expr) -> list:
    """Shape of a Relax tensor expression: ints where static, TIR expressions where symbolic."""
    dims = expr.ty.shape.values
    return [int(d) if isinstance(d, tirx.IntImm) else d for d in dims]


def relax_dtype(expr) -> str:
    return str(expr.ty.dtype)


def main_outputs(mod) -> list:
    """[(shape, dtype)] of what ``main`` returns (one tensor or a tuple): ints where static,
    None where symbolic (every dim, where only the rank is known; no dim, where not even that)."""
    ty = mod["main"].ret_ty
    fields = list(ty.fields) if hasattr(ty, "fields") else [ty]
    return [([int(d) if isinstance(d, tirx.IntImm) else None for d in f.shape.values]
             if f.shape is not None else [None] * max(int(f.ndim), 0), str(f.dtype))
            for f in fields]


def unknown_shapes(mod) -> list:
    """The bindings of ``main`` whose tensor shape TVM could not work out (shown as text): its
    CPU lowering refuses them ("emit_te now only supports Tensor that has ShapeExpr shape")."""
    found = []
    for block in mod["main"].body.blocks:
        for b in block.bindings:
            if isinstance(b.var.ty, relax.TensorType) and b.var.ty.shape is None:
                found.append(str(b.value))
    return found


def params_fed_only_to(mod, prefix: str) -> set:
    """Names of ``main``'s parameters used nowhere but as arguments of ``call_tir`` into PrimFuncs
    named ``prefix...`` (convt's kernels, which accept element-aligned data; TVM's own kernels
    for other ops may assume 64-byte alignment)."""
    from collections import Counter
    call_tir = tvm.ir.Op.get("relax.call_tir")
    uses, fed = Counter(), Counter()

    @relax.expr_functor.visitor
    class _Uses(relax.PyExprVisitor):
        def visit_var_(self, v):
            uses[v] += 1

        def visit_call_(self, call):
            if call.op.same_as(call_tir) and call.args[0].name_hint.startswith(prefix):
                fed.update(a for a in call.args[1].fields if isinstance(a, relax.Var))
            for arg in call.args:
                self.visit_expr(arg)

    main = mod["main"]
    _Uses().visit_expr(main.body)
    return {p.name for p in main.params if uses[p] == fed[p] > 0}
