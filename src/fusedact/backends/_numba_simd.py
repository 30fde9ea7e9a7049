"""AVX-512 instructions that LLVM's loop vectorizer cannot reach from a scalar loop, for the
numba backend: the C kernels' table permutes (vpermps/vpermt2pd, gelu's R(a) on 16 pieces,
one coefficient row per table) and vscalefps/vscalefpd (p 2^k in one rounding).

A loop that reads ``table[i]`` with a per-element index vectorizes into a gather: float64
gelu read its 14 coefficient rows that way and ran at 0.31x the C backend (2.03 ms against
0.66 at 262,144 elements, one thread), whose AVX-512 loop picks each lane's coefficient from
two registers with one vpermt2pd. And 2^k built from integer bits, in two normal halves where
k leaves the exponent range, costs silu's float32 loop about ten instructions a vector more
than C's two vscalefps. LLVM's loop vectorizer has no pattern for either, but it replaces a
call with a vector version of the callee when the callee names one (the
``vector-function-abi-variant`` attribute, as ``#pragma omp declare simd`` does). So on an
AVX-512 target a table read, or a scalef, is a call to a small scalar function that names its
vector versions, each one instruction or two (8 float64 lanes from 16 entries: vpermi2pd;
16 float32 lanes: vpermps). Elsewhere a table read is a load from a constant global, which
vectorizes into a gather as before, and the kernels keep their portable forms (scalef
exists only on AVX-512 targets: callers choose with ``available``).

The vectorizer runs in the last optimization pass of a function's own compilation, after
its last inlining, so the vector versions stay calls there; a jitted caller whose call is
marked to be inlined (``inlining_caller``) takes the loop in and inlines them. 262,144
elements, one thread, side by side with c: float64 gelu forward 2061 -> 698 us (c 638),
float32 226 -> 146 us (c 136), the same bits as c's AVX-512 loops; float32 silu 109 -> 93 us
(c 81) and gelu's tanh form 257 -> 225 us (c 203), the same bits as before.
"""

import functools
import warnings

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

TABLE_ENTRIES = 16  # indices are taken modulo 16 (their low four bits)


def target_has_avx512():
    """Whether Numba compiles for a CPU with AVX-512F and VL: the host's features, unless
    NUMBA_CPU_NAME names another target (a portable cache), which is then taken to lack it."""
    import numba
    from llvmlite import binding

    if numba.config.CPU_NAME not in (None, "host"):
        features = numba.config.CPU_FEATURES or ""
        return "+avx512f" in features and "+avx512vl" in features
    try:
        features = binding.get_host_cpu_features()
    except RuntimeError:  # the host's features unknown
        return False
    # VL for the 256-bit permutes, where the vectorizer picks half-width vectors
    return bool(features.get("avx512f", False) and features.get("avx512vl", False))


# The vector-function mapping and the inlining this module relies on are LLVM's internals; it
# was built and measured with llvmlite 0.50 (LLVM 22), and older LLVMs keep the portable forms.
MIN_LLVM_MAJOR = 22


@functools.lru_cache(maxsize=None)
def available():
    """Whether the numba kernels take this module's instructions: an AVX-512 (F and VL) target
    and an LLVM at least MIN_LLVM_MAJOR."""
    from llvmlite import binding

    return target_has_avx512() and binding.llvm_version_info[0] >= MIN_LLVM_MAJOR


_I32 = ir.IntType(32)


@intrinsic
def wide_vectors(typingctx):
    """Emits nothing; marks the LLVM function it lands in "prefer-vector-width"="512", so
    that the loop vectorizer may fill whole zmm registers there.

    LLVM's tuning for Intel's AVX-512 cores (Skylake-X to Emerald Rapids) prefers 256-bit
    vectors, against the clock penalty of 512-bit ones on the first of them; it keeps the
    numba loops at half the C kernels' width (their intrinsics are zmm) on such a CPU (on
    this repository's earlier AMD Zen 4 machine they had kept 0.7-1.0x c). On its Emerald
    Rapids machine, 262,144 float32, one thread, side by side with c: NUMBA_CPU_FEATURES with
    -prefer-256-bit took gelu forward from 0.55 to 0.87x c and silu backward from 0.72 to
    0.88x, but it would change the process's other numba code too; this attribute measured
    0.83x and 0.80x (a later, noisier run), and took the numba backend from 238 to 310 of
    bench/targets.py's 376 cases (82 -> 5 cells under 0.7x c). A loop is vectorized in the
    function that holds it after numba's inlining: a prange loop's body is a function of its
    own, so the call goes inside the loop as well.
    Without AVX-512 the attribute changes nothing; other targets ignore it."""

    def codegen(context, builder, signature, args):
        # llvmlite accepts only LLVM's named attributes; a string attribute goes in as text
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


def _declare(module, name, ret, params):
    try:
        return module.get_global(name)
    except KeyError:
        return ir.Function(module, ir.FunctionType(ret, params), name)


def _permute_16(builder, module, elem, lanes, index, table):
    """table[index & 15] for a vector of `lanes` indices (i32 for float, i64 for double):
    float: vpermps over one 16-entry register (512-bit lanes) or vpermi2ps over two 8-entry
    halves (256-bit); double: vpermi2pd over two 8-entry halves (512-bit), or two 256-bit
    vpermi2pd (8 entries each) and a select on bit 3 (4 lanes)."""
    declare = lambda name, ret, params: _declare(module, name, ret, params)  # noqa: E731
    vec = ir.VectorType(elem, lanes)
    itype = index.type
    if isinstance(elem, ir.FloatType):
        if lanes == 16:
            fn = declare("llvm.x86.avx512.permvar.sf.512", vec, [vec, itype])
            return builder.call(fn, [ir.Constant(vec, table), index])
        half = ir.VectorType(elem, 8)
        fn = declare("llvm.x86.avx512.vpermi2var.ps.256", half, [half, itype, half])
        return builder.call(fn, [ir.Constant(half, table[:8]), index,
                                 ir.Constant(half, table[8:])])
    if lanes == 8:
        fn = declare("llvm.x86.avx512.vpermi2var.pd.512", vec, [vec, itype, vec])
        return builder.call(fn, [ir.Constant(vec, table[:8]), index, ir.Constant(vec, table[8:])])
    # 4 lanes: entries 0-7 and 8-15 from one 256-bit two-register permute each
    fn = declare("llvm.x86.avx512.vpermi2var.pd.256", vec, [vec, itype, vec])
    low = builder.call(fn, [ir.Constant(vec, table[0:4]), index, ir.Constant(vec, table[4:8])])
    high = builder.call(fn, [ir.Constant(vec, table[8:12]), index,
                             ir.Constant(vec, table[12:16])])
    bit3 = builder.icmp_unsigned("!=", builder.and_(index, ir.Constant(itype, [8] * lanes)),
                                 ir.Constant(itype, [0] * lanes))
    return builder.select(bit3, high, low)


def _vector_widths(elem):
    # the loop vectorizer's choices on AVX-512 targets: 16 float or 8 double lanes (zmm),
    # or half that where it prefers 256-bit vectors
    return (16, 8) if isinstance(elem, ir.FloatType) else (8, 4)


def _define_vectorized(module, name, ret, params, vector_body):
    """The scalar function `name`(params) -> ret and its vector versions, one for each of
    _vector_widths(ret); vector_body(builder, lanes, vector arguments) builds a version's
    result. The scalar function runs the widest version on lane 0. Returns the scalar one."""
    try:
        return module.get_global(name)
    except KeyError:
        pass
    variants = []
    for lanes in _vector_widths(ret):
        vec_name = f"{name}_v{lanes}"
        vfn = ir.Function(module, ir.FunctionType(ir.VectorType(ret, lanes),
                                                  [ir.VectorType(t, lanes) for t in params]),
                          vec_name)
        # inlined wherever an optimization pass with an inliner runs after the vectorizer
        for attr in ("alwaysinline", "nounwind", "readnone"):
            vfn.attributes.add(attr)
        vb = ir.IRBuilder(vfn.append_basic_block())
        vb.ret(vector_body(vb, lanes, list(vfn.args)))
        variants.append(f"_ZGV_LLVM_N{lanes}{'v' * len(params)}_{name}({vec_name})")
    fn = ir.Function(module, ir.FunctionType(ret, params), name)
    fn.linkage = "internal"
    # noinline: inlined before the vectorizer runs, the call and its mapping would be gone
    for attr in ("noinline", "nounwind", "readnone"):
        fn.attributes.add(attr)
    # llvmlite accepts only LLVM's named attributes; a string attribute goes in as text
    set.add(fn.attributes, f'"vector-function-abi-variant"="{",".join(variants)}"')
    sb = ir.IRBuilder(fn.append_basic_block())
    lanes = _vector_widths(ret)[0]
    vectors = [sb.insert_element(ir.Constant(ir.VectorType(t, lanes), None), a,
                                 ir.Constant(_I32, 0)) for t, a in zip(params, fn.args)]
    sb.ret(sb.extract_element(vector_body(sb, lanes, vectors), ir.Constant(_I32, 0)))
    return fn


def _define_global(module, name, elem, table):
    try:
        return module.get_global(name)
    except KeyError:
        pass
    array = ir.ArrayType(elem, TABLE_ENTRIES)
    g = ir.GlobalVariable(module, array, name)
    g.linkage = "internal"
    g.global_constant = True
    g.initializer = ir.Constant(array, table)
    return g


_made = set()


def table_reader(name, values, dtype, permute=None):
    """An intrinsic read(i) -> values[i % 16] (values: up to 16 numbers, stored as `dtype`,
    float32 or float64). `name` must be unique per table; permute=None: permutes exactly
    where ``available``."""
    if name in _made:
        raise ValueError(f"table {name!r} defined twice")
    _made.add(name)
    dtype = np.dtype(dtype)
    if len(values) > TABLE_ENTRIES or dtype not in (np.float32, np.float64):
        raise ValueError(f"table {name!r}: up to {TABLE_ENTRIES} float32/float64 values")
    table = [float(v) for v in np.asarray(values, dtype)] + [0.0] * (TABLE_ENTRIES - len(values))
    single = dtype == np.float32
    nb_type = types.float32 if single else types.float64
    permute = available() if permute is None else permute
    symbol = f"fusedact_table_{name}"

    @intrinsic
    def read(typingctx, index):
        if not isinstance(index, types.Integer):
            return None
        sig = nb_type(index)

        def codegen(context, builder, signature, args):
            elem = ir.FloatType() if single else ir.DoubleType()
            itype = ir.IntType(32 if single else 64)  # the permutes' index lanes
            i = builder.and_(context.cast(builder, args[0], signature.args[0],
                                          types.int32 if single else types.int64),
                             ir.Constant(itype, TABLE_ENTRIES - 1))
            if permute:
                module = builder.module
                fn = _define_vectorized(
                    module, symbol, elem, [itype],
                    lambda b, lanes, a: _permute_16(b, module, elem, lanes, a[0], table))
                return builder.call(fn, [i])
            g = _define_global(builder.module, symbol, elem, table)
            return builder.load(builder.gep(g, [ir.Constant(_I32, 0), i], inbounds=True))

        return sig, codegen

    return read


def _scalef_vector(builder, lanes, args):
    """vscalefps/vscalefpd on `lanes` lanes: a 2^floor(k), rounded once (gradual underflow)."""
    a, k = args
    vec = a.type
    single = isinstance(vec.element, ir.FloatType)
    bits = vec.count * (32 if single else 64)
    mask_type = ir.IntType(max(8, vec.count))
    name = f"llvm.x86.avx512.mask.scalef.{'ps' if single else 'pd'}.{bits}"
    all_lanes = ir.Constant(mask_type, -1)
    if bits == 512:  # with a rounding operand: 4, the current mode
        fn = _declare(builder.module, name, vec, [vec, vec, vec, mask_type, _I32])
        return builder.call(fn, [a, k, ir.Constant(vec, None), all_lanes, ir.Constant(_I32, 4)])
    fn = _declare(builder.module, name, vec, [vec, vec, vec, mask_type])
    return builder.call(fn, [a, k, ir.Constant(vec, None), all_lanes])


@intrinsic
def scalef(typingctx, a, k):
    """a 2^floor(k) rounded once, float32 or float64, as vscalefps/vscalefpd (AVX-512 targets
    only: ``available``). k = +-inf and NaN follow the instruction (the kernels pass
    whole finite k)."""
    if not (a == k and a in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        elem = args[0].type
        name = f"fusedact_scalef_{'f32' if isinstance(elem, ir.FloatType) else 'f64'}"
        fn = _define_vectorized(builder.module, name, elem, [elem, elem], _scalef_vector)
        return builder.call(fn, list(args))

    return a(a, k), codegen


def inlining_caller(inner):
    """An intrinsic call(args) -> inner(*args) whose call instruction is marked alwaysinline.

    The loop vectorizer runs in the last optimization pass of the function that holds the
    loop, after that pass's inlining: the permutes of a table read stay calls to the vector
    versions there (float64 gelu, 262,144 elements, one thread: 2.9 ms, against 2.0 with
    gathers). A jitted caller links the loop's optimized module and optimizes it once more,
    but calls its own copy only if it inlines it: the loop's own compiled code, loaded first
    under the same symbol, would otherwise be the one called. Marked alwaysinline, the loop
    is inlined into the caller in that second pass, and the permutes into the loop."""
    import llvmlite.ir.instructions as ir_instructions

    @intrinsic
    def call(typingctx, args):
        if not isinstance(args, types.BaseTuple):
            return None
        fnty = typingctx.resolve_value_type(inner)
        inner_sig = typingctx.resolve_function_type(fnty, tuple(args), {})
        if inner_sig is None:
            return None
        sig = inner_sig.return_type(args)

        def codegen(context, builder, signature, call_args):
            (tuple_ty,), (packed,) = signature.args, call_args
            values = [builder.extract_value(packed, i) for i in range(len(tuple_ty))]
            before = {id(i) for b in builder.function.blocks for i in b.instructions}
            result = context.get_function(fnty, inner_sig)(builder, values)
            marked = 0
            for block in builder.function.blocks:
                for instr in block.instructions:
                    if (id(instr) not in before and isinstance(instr, ir_instructions.CallInstr)
                            and getattr(instr.callee, "name", "").startswith("_ZN")):
                        instr.attributes.add("alwaysinline")
                        marked += 1
            if not marked:  # numba's lowering changed: right results, at the calls' speed
                warnings.warn("fusedact: no call to mark alwaysinline in a numba loop wrapper; "
                              "the loop runs with its vector instructions as calls (slower)",
                              RuntimeWarning, stacklevel=1)
            return result

        return sig, codegen

    return call
