"""Register-tiled multiply-accumulate for the Numba CPU backend, written as LLVM vector code for
the instruction set numba compiles for (:mod:`minireptile.backends.isa`).

Contract
--------
:func:`gemm` computes, for the flat float buffers ``c``, ``u``, ``v`` (one dtype) and int offsets,

    G[r, j] = Σ_{k < K} U[r, k] · V[k, j]        r < R, j < n
    U[r, k] = u[u_off + r·us_r + k·us_k]         (any strides: U may be a transposed view)
    V[k, j] = v[v_off + k·ldv + j]               (rows contiguous)
    C[r, j] = c[c_off + r·ldc + j]

and stores, by ``mode``: 0 → C = G; 1 → C = C + Σ_k … (the sum starts from C); 2 → C = C − α·G
(the SGD step θ − lr·g). Every G[r, j] is ONE multiply-add chain over k = 0, 1, …, K−1 (fused
where the CPU has FMA), the same whether it lands in a vector lane or in the scalar remainder, so
the result depends on neither the tiling nor the thread count nor the vector width (AVX2 and
AVX-512 give bitwise the same C), and UᵀV computed as (VᵀU)ᵀ gives bitwise the same numbers (the
backend relies on that to keep W and Wᵀ exact transposes).

Why LLVM IR by hand: LLVM's loop vectoriser only vectorises innermost loops, so plain Numba loops
for these small products (64×64 weights, minibatch 10) load and store the output row for every
k and reach about a third of the core's FMA throughput. Here a tile of ``mr`` rows × ``nv``
vectors (16 float32 / 8 float64 lanes each, i.e. 64-byte vectors) stays in registers for the
whole k loop: per k, ``nv`` vector loads of V, ``mr`` broadcasts of U, ``mr·nv`` FMAs. The vector
is one register of the target (64 bytes with AVX-512, 32 with AVX2, else 16) and the tile is the
largest that leaves registers for the loads, per instruction set (:data:`ISA`, chosen once from
numba's target; the table is in :mod:`minireptile.backends.isa`): a tile of 64-byte vectors on an
AVX2 CPU needs 48 registers of its 16 and LLVM spills them to the stack on every k. Everything
else in the backend is plain Numba; :func:`gemm_reference` is the NumPy twin the tests check
against.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from .isa import target_isa

_JIT = dict(cache=True, error_model="numpy", nogil=True)
# The instruction set numba compiles for, decided once when the backend first loads this module. Numba
# keys its on-disk cache on the same CPU name and features, so code cached for one target is never loaded
# for another.
ISA = target_isa()
MR, NV = ISA.mr, ISA.nv  # gemm's register tile: MR rows × NV vectors
# dot sums in 4 accumulators of 64 bytes whatever the registers are (2 AVX2 or 4 SSE registers each), so
# its order of additions, and with it the result, is the same on every target with FMA
DOT_BYTES = 64
MODE_STORE, MODE_ACCUMULATE, MODE_SGD = 0, 1, 2


def _vector_types(context, dtype, nbytes=None):
    """(element type, itemsize, lanes, vector type, i64) for vectors of ``dtype``: one register of the
    target (``ISA.vector_bytes``) unless ``nbytes`` says how many bytes."""
    fty = context.get_value_type(dtype)
    itemsize = context.get_abi_sizeof(fty)
    lanes = (nbytes or ISA.vector_bytes) // itemsize
    return fty, itemsize, lanes, ir.VectorType(fty, lanes), ir.IntType(64)


def _fma_decl(builder, ty):
    """The llvm.fma intrinsic for a float/double scalar or vector type."""
    base = ty.element if isinstance(ty, ir.VectorType) else ty
    name = "llvm.fma." + (f"v{ty.count}" if isinstance(ty, ir.VectorType) else "")
    name += "f32" if isinstance(base, ir.FloatType) else "f64"
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty, ty, ty]), name)


def _madd(builder, x, y, z):
    """x·y + z for scalars or vectors: one fused multiply-add where the target has FMA, else a product
    rounded, then added (LLVM would call a software fmaf per lane for llvm.fma)."""
    if ISA.fma:
        return builder.call(_fma_decl(builder, x.type), [x, y, z])
    return builder.fadd(builder.fmul(x, y), z)


def _splat(builder, value, vty):
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(i32, 0))
    return builder.shuffle_vector(one, ir.Constant(vty, ir.Undefined),
                                  ir.Constant(ir.VectorType(i32, vty.count), [0] * vty.count))


def _vptr(builder, base, offset, vty):
    """Pointer to the vector of ``vty`` starting at element ``base[offset]``."""
    return builder.bitcast(builder.gep(base, [offset]), vty.as_pointer())


def _load(builder, ptr, ty, align=None):
    return builder.load(ptr, align=align, typ=ty)


@intrinsic
def madd_scalar(typingctx, x, y, z):
    """x·y + z for float32/float64 scalars as the vector lanes compute it (:func:`_madd`): one
    rounding where the target has FMA."""
    if not (isinstance(x, types.Float) and x == y == z):
        return None

    def codegen(context, builder, sig, args):
        return _madd(builder, *args)

    return x(x, y, z), codegen


@intrinsic(prefer_literal=True)
def _tile(typingctx, c, c_off, ldc, u, u_off, us_r, us_k, v, v_off, ldv, K, alpha, mode, mr, nv):
    """One register tile: rows r < mr, columns j < nv·lanes of the product described in the
    module docstring (all offsets already point at the tile's first row / column)."""
    if not (isinstance(mr, types.IntegerLiteral) and isinstance(nv, types.IntegerLiteral)):
        return None
    if not (isinstance(c, types.Array) and c.dtype == u.dtype == v.dtype == alpha
            and isinstance(alpha, types.Float)):
        return None
    MR, NV = mr.literal_value, nv.literal_value
    sig = types.void(c, c_off, ldc, u, u_off, us_r, us_k, v, v_off, ldv, K, alpha, mode, mr, nv)

    def codegen(context, builder, signature, args):
        (c_a, c_off_, ldc_, u_a, u_off_, us_r_, us_k_, v_a, v_off_, ldv_, K_, alpha_, mode_, _, _) = args
        aty = signature.args[0]
        fty, itemsize, lanes, vty, i64 = _vector_types(context, aty.dtype)
        cdata = context.make_array(aty)(context, builder, c_a).data
        udata = context.make_array(signature.args[3])(context, builder, u_a).data
        vdata = context.make_array(signature.args[7])(context, builder, v_a).data
        cp = builder.gep(cdata, [c_off_])
        up = builder.gep(udata, [u_off_])
        vp = builder.gep(vdata, [v_off_])
        zero = ir.Constant(vty, None)

        def cvec(r, i):  # pointer to C[r, i-th vector]
            offset = builder.add(builder.mul(ir.Constant(i64, r), ldc_), ir.Constant(i64, i * lanes))
            return _vptr(builder, cp, offset, vty)

        accumulate = builder.icmp_signed("==", mode_, ir.Constant(mode_.type, MODE_ACCUMULATE))
        accs = []
        for r in range(MR):
            row = []
            for i in range(NV):
                slot = cgutils.alloca_once(builder, vty)
                init = builder.select(accumulate, _load(builder, cvec(r, i), vty, itemsize), zero)
                builder.store(init, slot)
                row.append(slot)
            accs.append(row)
        with cgutils.for_range(builder, K_) as loop:
            k = loop.index
            vrow = builder.mul(k, ldv_)
            vv = [_load(builder, _vptr(builder, vp, builder.add(vrow, ir.Constant(i64, i * lanes)), vty), vty, itemsize)
                  for i in range(NV)]                                  # V[k, tile columns]
            kk = builder.mul(k, us_k_)
            for r in range(MR):
                uoff = builder.add(builder.mul(ir.Constant(i64, r), us_r_), kk)
                ub = _splat(builder, _load(builder, builder.gep(up, [uoff]), fty), vty)   # U[r, k] in every lane
                for i in range(NV):
                    acc = _load(builder, accs[r][i], vty)
                    builder.store(_madd(builder, ub, vv[i], acc), accs[r][i])
        sgd = builder.icmp_signed("==", mode_, ir.Constant(mode_.type, MODE_SGD))
        alpha_v = _splat(builder, alpha_, vty)
        for r in range(MR):
            for i in range(NV):
                ptr = cvec(r, i)
                acc = _load(builder, accs[r][i], vty)
                with builder.if_else(sgd) as (then, otherwise):
                    with then:
                        old = _load(builder, ptr, vty, itemsize)
                        builder.store(builder.fsub(old, builder.fmul(alpha_v, acc)), ptr, align=itemsize)
                    with otherwise:
                        builder.store(acc, ptr, align=itemsize)
        return context.get_dummy_value()

    return sig, codegen


def _hsum(builder, vec):
    """Horizontal sum by halving: ((lane 0..W/2) + (lane W/2..W)) recursively, a fixed tree."""
    i32 = ir.IntType(32)
    while vec.type.count > 1:
        half = vec.type.count // 2
        undef = ir.Constant(vec.type, ir.Undefined)
        lo = builder.shuffle_vector(vec, undef, ir.Constant(ir.VectorType(i32, half), list(range(half))))
        hi = builder.shuffle_vector(vec, undef, ir.Constant(ir.VectorType(i32, half), list(range(half, 2 * half))))
        vec = builder.fadd(lo, hi)
    return builder.extract_element(vec, ir.Constant(i32, 0))


@intrinsic
def dot(typingctx, x, xo, y, yo, n):
    """Σ_k x[xo + k]·y[yo + k], k < n: four accumulators of 64 bytes (``DOT_BYTES``, on any target)
    over blocks of 4 such vectors, added as (a0 + a1) + (a2 + a3), summed across lanes by halving,
    then the scalar tail by multiply-add. The order is fixed by the code (not by a vectoriser or the
    register width), so the result is reproducible and the same on every target with FMA. For the
    narrow output layer, whose dot products plain loops would run as one long scalar chain."""
    if not (isinstance(x, types.Array) and isinstance(y, types.Array) and x.dtype == y.dtype
            and isinstance(x.dtype, types.Float)):
        return None
    sig = x.dtype(x, xo, y, yo, n)

    def codegen(context, builder, signature, args):
        xa, xo_, ya, yo_, n_ = args
        fty, itemsize, lanes, vty, i64 = _vector_types(context, signature.args[0].dtype, DOT_BYTES)
        xp = builder.gep(make_array(signature.args[0])(context, builder, xa).data, [xo_])
        yp = builder.gep(make_array(signature.args[2])(context, builder, ya).data, [yo_])
        accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, None)) for _ in range(4)]
        nblocks = builder.sdiv(n_, ir.Constant(i64, 4 * lanes))
        with cgutils.for_range(builder, nblocks) as loop:
            base = builder.mul(loop.index, ir.Constant(i64, 4 * lanes))
            for q in range(4):
                off = builder.add(base, ir.Constant(i64, q * lanes))
                xv = _load(builder, _vptr(builder, xp, off, vty), vty, itemsize)
                yv = _load(builder, _vptr(builder, yp, off, vty), vty, itemsize)
                builder.store(_madd(builder, xv, yv, _load(builder, accs[q], vty)), accs[q])
        done = builder.mul(nblocks, ir.Constant(i64, 4 * lanes))
        nvec = builder.sdiv(builder.sub(n_, done), ir.Constant(i64, lanes))
        with cgutils.for_range(builder, nvec) as loop:  # remaining whole vectors into a0
            off = builder.add(done, builder.mul(loop.index, ir.Constant(i64, lanes)))
            xv = _load(builder, _vptr(builder, xp, off, vty), vty, itemsize)
            yv = _load(builder, _vptr(builder, yp, off, vty), vty, itemsize)
            builder.store(_madd(builder, xv, yv, _load(builder, accs[0], vty)), accs[0])
        a = [_load(builder, acc, vty) for acc in accs]
        total = cgutils.alloca_once_value(builder, _hsum(builder, builder.fadd(builder.fadd(a[0], a[1]),
                                                                              builder.fadd(a[2], a[3]))))
        start = builder.add(done, builder.mul(nvec, ir.Constant(i64, lanes)))
        with cgutils.for_range(builder, builder.sub(n_, start)) as loop:  # scalar tail
            k = builder.add(start, loop.index)
            xs = _load(builder, builder.gep(xp, [k]), fty)
            ys = _load(builder, builder.gep(yp, [k]), fty)
            builder.store(_madd(builder, xs, ys, _load(builder, total, fty)), total)
        return _load(builder, total, fty)

    return sig, codegen


def dot_reference(x, xo, y, yo, n):
    """NumPy twin of :func:`dot` (float64 sum; equal to rounding)."""
    return float(np.dot(x[xo:xo + n].astype(np.float64), y[yo:yo + n].astype(np.float64)))


VECTOR_BYTES = ISA.vector_bytes
TANH64_REGISTERS = 4  # per float64 tanh step: 4 long dependency chains interleave (float32's are short: 1)


@njit(**_JIT, no_cpython_wrapper=True, no_cfunc_wrapper=True)  # compiled callers only (no wrappers to compile)
def gemm(c, c_off, ldc, R, n, u, u_off, us_r, us_k, v, v_off, ldv, K, alpha, mode):
    """C (R, n) ⟵ Σ_k U[:, k] V[k, :] by ``mode`` (see the module docstring); flat 1-D buffers.

    Column blocks of NV vectors in tiles of MR rows (then 4, 2, 1 rows for the rest), then single
    vectors in tiles of MR and 1 rows, then scalar columns; MR × NV is the target's tile
    (:data:`ISA`). (One function, not one per block shape: every compiled function is code generated
    again in each caller that links it, so fewer is faster to compile.)
    """
    lanes = VECTOR_BYTES // c.itemsize
    j = 0
    while j + NV * lanes <= n:
        r = 0
        while r + MR <= R:
            _tile(c, c_off + r * ldc + j, ldc, u, u_off + r * us_r, us_r, us_k, v, v_off + j, ldv, K, alpha, mode, MR, NV)
            r += MR
        if MR > 4 and r + 4 <= R:
            _tile(c, c_off + r * ldc + j, ldc, u, u_off + r * us_r, us_r, us_k, v, v_off + j, ldv, K, alpha, mode, 4, NV)
            r += 4
        if r + 2 <= R:
            _tile(c, c_off + r * ldc + j, ldc, u, u_off + r * us_r, us_r, us_k, v, v_off + j, ldv, K, alpha, mode, 2, NV)
            r += 2
        if r < R:
            _tile(c, c_off + r * ldc + j, ldc, u, u_off + r * us_r, us_r, us_k, v, v_off + j, ldv, K, alpha, mode, 1, NV)
        j += NV * lanes
    while j + lanes <= n:
        r = 0
        while r + MR <= R:
            _tile(c, c_off + r * ldc + j, ldc, u, u_off + r * us_r, us_r, us_k, v, v_off + j, ldv, K, alpha, mode, MR, 1)
            r += MR
        while r < R:
            _tile(c, c_off + r * ldc + j, ldc, u, u_off + r * us_r, us_r, us_k, v, v_off + j, ldv, K, alpha, mode, 1, 1)
            r += 1
        j += lanes
    for r in range(R):  # the last columns (fewer than a vector) one element at a time, the same chain
        for jj in range(j, n):
            ci = c_off + r * ldc + jj
            acc = c[ci] if mode == MODE_ACCUMULATE else c.dtype.type(0)
            for k in range(K):
                acc = madd_scalar(u[u_off + r * us_r + k * us_k], v[v_off + k * ldv + jj], acc)
            if mode == MODE_SGD:
                c[ci] = c[ci] - alpha * acc
            else:
                c[ci] = acc


def gemm_reference(c, c_off, ldc, R, n, u, u_off, us_r, us_k, v, v_off, ldv, K, alpha, mode):
    """NumPy twin of :func:`gemm` (float64 sums; equal to rounding)."""
    strided = np.lib.stride_tricks.as_strided
    U = strided(u[u_off:], (R, K), (us_r * u.itemsize, us_k * u.itemsize)) if R and K else np.zeros((R, K))
    V = strided(v[v_off:], (K, n), (ldv * v.itemsize, v.itemsize)) if K and n else np.zeros((K, n))
    C = np.lib.stride_tricks.as_strided(c[c_off:], (R, n), (ldc * c.itemsize, c.itemsize))
    G = U.astype(np.float64) @ V.astype(np.float64)
    if mode == MODE_STORE:
        C[...] = G
    elif mode == MODE_ACCUMULATE:
        C[...] = C + G
    else:
        C[...] = C - alpha * G


# ---------------------------------------------------------------------------------------------
# tanh over a whole array, in vectors of the target
# ---------------------------------------------------------------------------------------------
def _const(ty, value):
    """A float constant of ``ty`` (scalar or vector; the value rounded to the element type first)."""
    base = ty.element if isinstance(ty, ir.VectorType) else ty
    value = float(np.float32(value)) if isinstance(base, ir.FloatType) else float(value)
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(base, value)] * ty.count)
    return ir.Constant(ty, value)


def _fabs(builder, x):
    name = "llvm.fabs." + (f"v{x.type.count}" if isinstance(x.type, ir.VectorType) else "")
    base = x.type.element if isinstance(x.type, ir.VectorType) else x.type
    name += "f32" if isinstance(base, ir.FloatType) else "f64"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(x.type, [x.type]), name)
    return builder.call(fn, [x])


def _flip_sign(builder, r, x):
    """r with its sign flipped where x is negative (r XOR x's sign bit); scalars or vectors."""
    bits = 32 if isinstance(getattr(x.type, "element", x.type), ir.FloatType) else 64
    n = getattr(x.type, "count", None)
    ity = ir.VectorType(ir.IntType(bits), n) if n else ir.IntType(bits)
    sign = ir.Constant(ity, [1 << (bits - 1)] * n if n else 1 << (bits - 1))
    xs = builder.and_(builder.bitcast(x, ity), sign)
    return builder.bitcast(builder.xor(builder.bitcast(r, ity), xs), x.type)


def _tanh_ir(builder, x):
    """:func:`~minireptile.backends.kernel_math.tanh_f32` / ``tanh_f64`` of ``x`` (float or double, scalar
    or vector): the same formulas, with each ``a·b + c`` of them one fused multiply-add where the target
    has FMA (:func:`_madd`; without FMA, kernel_math's operations one for one). A scalar and a vector
    lane run the same operations, so every element is bitwise the same whatever the vector width.

    The formulas are odd functions built of sign-symmetric operations (a product's rounding does not
    depend on the signs), so tanh(−x) is −tanh(x) bit for bit: they run on |x|, where each clamp has one
    side, and x's sign is put back at the end; the result is bitwise kernel_math's arrangement."""
    from . import kernel_math as km

    ty = x.type
    c = lambda v: _const(ty, v)  # noqa: E731
    mul, add = builder.fmul, builder.fadd
    madd = lambda a, b, d: _madd(builder, a, b, d)  # a·b + d  # noqa: E731
    below = lambda v, b: builder.select(builder.fcmp_ordered(">", v, c(b)), c(b), v)  # NaN passes  # noqa: E731
    base = ty.element if isinstance(ty, ir.VectorType) else ty
    ax = _fabs(builder, x)
    if isinstance(base, ir.FloatType):
        xc = below(ax, km._T32_CLAMP)
        x2 = mul(xc, xc)
        p = madd(x2, c(km._T32_A13), c(km._T32_A11))
        for a in (km._T32_A9, km._T32_A7, km._T32_A5, km._T32_A3, km._T32_A1):
            p = madd(p, x2, c(a))
        q = madd(x2, c(km._T32_B6), c(km._T32_B4))
        for b in (km._T32_B2, km._T32_B0):
            q = madd(q, x2, c(b))
        r = builder.fdiv(mul(xc, p), q)
        tiny = km._T32_TINY
    else:
        xc = below(ax, km._T64_CLAMP)
        y = mul(xc, c(0.03125))
        s = mul(y, y)
        ps = madd(madd(c(km._T64_P0), s, c(km._T64_P1)), s, c(km._T64_P2))
        qs = madd(madd(add(s, c(km._T64_Q1)), s, c(km._T64_Q2)), s, c(km._T64_Q3))
        p = mul(y, madd(s, ps, qs))
        q = qs
        for _ in range(5):  # 2·p·q is (p + p)·q exactly; p² + q² is p·p + (q·q)
            p, q = mul(add(p, p), q), madd(p, p, mul(q, q))
        r = below(builder.fdiv(p, q), 1.0)
        tiny = km._T64_TINY
    return builder.select(builder.fcmp_ordered("<", ax, c(tiny)), x, _flip_sign(builder, r, x))


@intrinsic
def tanh_inplace(typingctx, arr):
    """arr[i] = tanh(arr[i]) for a 1-D C float array, one vector register of lanes at a time (float64: four,
    :data:`TANH64_REGISTERS`), then the tail one element at a time (:func:`_tanh_ir`); every element is
    bitwise what the tail computes for it alone, so the result does not depend on the vector width. (LLVM's loop
    vectoriser uses 32-byte vectors on Intel cores that prefer them; this is the forward pass's
    largest cost after the products.)"""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
            and isinstance(arr.dtype, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        aty = signature.args[0]
        per = TANH64_REGISTERS if context.get_abi_sizeof(context.get_value_type(aty.dtype)) == 8 else 1
        fty, itemsize, lanes, vty, i64 = _vector_types(context, aty.dtype, ISA.vector_bytes * per)
        a = make_array(aty)(context, builder, args[0])
        n = builder.extract_value(a.shape, 0)
        data = a.data
        nvec = builder.sdiv(n, ir.Constant(i64, lanes))
        with cgutils.for_range(builder, nvec) as loop:
            ptr = _vptr(builder, data, builder.mul(loop.index, ir.Constant(i64, lanes)), vty)
            builder.store(_tanh_ir(builder, _load(builder, ptr, vty, itemsize)), ptr, align=itemsize)
        start = builder.mul(nvec, ir.Constant(i64, lanes))
        with cgutils.for_range(builder, builder.sub(n, start)) as loop:
            ptr = builder.gep(data, [builder.add(start, loop.index)])
            builder.store(_tanh_ir(builder, _load(builder, ptr, fty)), ptr)
        return context.get_dummy_value()

    return types.void(arr), codegen


# ---------------------------------------------------------------------------------------------
# transpose in register blocks
# ---------------------------------------------------------------------------------------------
def _transpose_network(builder, rows, h1=None):
    """Transpose the N×N block held in ``rows`` (N vectors of N lanes, N a power of two): at each scale
    h = 1, 2, 4, … < h1 (default N) rows i and i + h swap their off-diagonal h×h sub-blocks (two
    shuffles per pair). Each scale swaps one bit of the row index with that bit of the column index, so
    the scales commute and any of them may be done elsewhere (:func:`_load_crossed`)."""
    n = len(rows)
    i32 = ir.IntType(32)
    rows = list(rows)
    h = 1
    while h < (h1 or n):
        lo = ir.Constant(ir.VectorType(i32, n), [j if j & h == 0 else n + j - h for j in range(n)])
        hi = ir.Constant(ir.VectorType(i32, n), [j + h if j & h == 0 else n + j for j in range(n)])
        for i in range(n):
            if i & h == 0:
                a, b = rows[i], rows[i + h]
                rows[i], rows[i + h] = builder.shuffle_vector(a, b, lo), builder.shuffle_vector(a, b, hi)
        h *= 2
    return rows


def _concat(builder, parts):
    """One vector of the equal vectors ``parts`` side by side."""
    i32 = ir.IntType(32)
    while len(parts) > 1:
        w = parts[0].type.count
        mask = ir.Constant(ir.VectorType(i32, 2 * w), list(range(2 * w)))
        parts = [builder.shuffle_vector(a, b, mask) for a, b in zip(parts[::2], parts[1::2])]
    return parts[0]


def _load_crossed(builder, base, row_off, col0, vty, q, itemsize):
    """The N rows of the N×N block at rows ``row_off`` (element offsets), column ``col0``, with the scales
    h >= q of :func:`_transpose_network` already done: row P·q + c is the q-lane pieces
    src[p·q + c, col0 + P·q : col0 + P·q + q], p = 0, 1, …, side by side. With q the lanes of 16 bytes,
    loading pieces moves the shuffles across 16-byte lanes (one execution port on x86) onto the loads."""
    n = vty.count
    i64 = ir.IntType(64)
    pty = ir.VectorType(vty.element, q)
    rows = []
    for i in range(n):
        P, c = divmod(i, q)
        parts = []
        for p in range(n // q):
            off = builder.add(row_off[p * q + c], builder.add(col0, ir.Constant(i64, P * q)))
            parts.append(_load(builder, _vptr(builder, base, off, pty), pty, itemsize))
        rows.append(_concat(builder, parts))
    return rows


@intrinsic
def transpose_blocks(typingctx, dst, src):
    """dst[j, i] = src[i, j] for i < m − m mod N, j < n − n mod N, in N×N blocks moved through registers
    (N = the lanes of one vector register: 16 float32 / 8 float64 with AVX-512, 8 / 4 with AVX2, so a
    block is N registers); returns N. The caller copies the remaining rows and columns. src (m, n),
    dst (n, m), C arrays of one float dtype. A plain loop writes dst with a stride of m elements and,
    for the 784×256 weights of the Omniglot network, took half of a training step (once per Adam
    step); this moves a whole register per load and store."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array) and dst.ndim == src.ndim == 2
            and dst.layout == src.layout == "C" and dst.dtype == src.dtype and isinstance(src.dtype, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        dty, sty = signature.args
        fty, itemsize, N, vty, i64 = _vector_types(context, sty.dtype)
        d = make_array(dty)(context, builder, args[0])
        s = make_array(sty)(context, builder, args[1])
        m, n = cgutils.unpack_tuple(builder, s.shape)
        nN = ir.Constant(i64, N)
        mb = builder.sdiv(m, nN)
        nb = builder.sdiv(n, nN)
        with cgutils.for_range(builder, mb) as bi:
            i0 = builder.mul(bi.index, nN)
            with cgutils.for_range(builder, nb) as bj:
                j0 = builder.mul(bj.index, nN)
                row_off = [builder.mul(builder.add(i0, ir.Constant(i64, r)), n) for r in range(N)]
                # float64: the shuffles across 16-byte lanes done by the loads (half of the shuffles with AVX2);
                # float32 loads whole rows (LLVM's own shuffles are nearly as few, and compile faster)
                q = min(N, 16 // itemsize) if itemsize == 8 else N
                rows = _load_crossed(builder, s.data, row_off, j0, vty, q, itemsize)   # src[i0:i0 + N, j0:j0 + N]
                for r, vec in enumerate(_transpose_network(builder, rows, q)):   # dst[j0 + r, i0:i0 + N]
                    off = builder.add(builder.mul(builder.add(j0, ir.Constant(i64, r)), m), i0)
                    builder.store(vec, _vptr(builder, d.data, off, vty), align=itemsize)
        return ir.Constant(i64, N)

    return types.int64(dst, src), codegen
