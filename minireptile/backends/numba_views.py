"""Borrowed array views for the Numba CPU kernels: no bounds checks, no reference count.

Contract
--------
``view1d(arr, off, n)``, ``view2d(arr, off, n0, n1)`` and ``row(arr, i)`` are ``arr[off:off + n]``,
``arr[off:off + n0·n1].reshape((n0, n1))`` and ``arr[i]`` for C-contiguous arrays, inside compiled
code only. The caller guarantees the indices are in range and that a view does not outlive the
array it was made from. Why: a slice's reshape is not inlined (~17 ns), flat indexing with a
signed offset keeps LLVM from vectorising (numba's negative-index wraparound), and each view of a
reference-counted array costs an atomic increment and decrement.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array


def _borrowed_view(context, builder, src_ty, src_val, dst_ty, offset, shape, strides):
    """An array struct of ``dst_ty`` over ``src``'s data from element ``offset``, with no meminfo.

    A view without a meminfo is not reference counted: creating, passing and dropping it costs no
    atomic increment and decrement (on Intel cores these alone took 17% of a serial step). It is
    only valid while ``src`` is alive, so such views must stay inside the kernel that made them.
    """
    src = make_array(src_ty)(context, builder, src_val)
    dst = make_array(dst_ty)(context, builder)
    populate_array(dst, data=builder.gep(src.data, [offset]), shape=cgutils.pack_array(builder, shape),
                   strides=cgutils.pack_array(builder, strides), itemsize=src.itemsize, meminfo=None,
                   parent=None)
    return dst._getvalue()


def _intp_args(context, builder, signature, args):
    return [context.cast(builder, x, t, types.intp) for x, t in zip(args[1:], signature.args[1:])]


@intrinsic
def view2d(typingctx, arr, off, n0, n1):
    """``arr[off:off + n0·n1].reshape((n0, n1))`` for a 1-D C array, without checks or reference count.

    ``reshape`` of a slice costs ~17 ns (it is not inlined) and flat indexing with a signed
    offset keeps LLVM from vectorising (Numba's negative-index wraparound); this view costs
    nothing. The caller guarantees ``0 <= off`` and ``off + n0·n1 <= len(arr)``, and that the view
    does not outlive ``arr`` (it is borrowed: see :func:`_borrowed_view`).
    """
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"):
        return None
    sig = arr.copy(ndim=2, layout="C")(arr, off, n0, n1)

    def codegen(context, builder, signature, args):
        o, d0, d1 = _intp_args(context, builder, signature, args)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(arr.dtype)))
        return _borrowed_view(context, builder, signature.args[0], args[0], signature.return_type, o, [d0, d1],
                              [builder.mul(d1, itemsize), itemsize])

    return sig, codegen


@intrinsic
def view1d(typingctx, arr, off, n):
    """``arr[off:off + n]`` for a 1-D C array, borrowed (see :func:`view2d`): no checks, no reference count."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"):
        return None
    sig = arr.copy(layout="C")(arr, off, n)

    def codegen(context, builder, signature, args):
        o, d0 = _intp_args(context, builder, signature, args)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(arr.dtype)))
        return _borrowed_view(context, builder, signature.args[0], args[0], signature.return_type, o, [d0],
                              [itemsize])

    return sig, codegen


@intrinsic
def row(typingctx, arr, i):
    """``arr[i]`` for a C array of 2 or more dimensions, borrowed (see :func:`view2d`): no checks, no
    reference count. The caller guarantees ``0 <= i < arr.shape[0]``."""
    if not (isinstance(arr, types.Array) and arr.ndim >= 2 and arr.layout == "C"):
        return None
    sig = arr.copy(ndim=arr.ndim - 1, layout="C")(arr, i)

    def codegen(context, builder, signature, args):
        src = make_array(signature.args[0])(context, builder, args[0])
        shape = cgutils.unpack_tuple(builder, src.shape)
        strides = cgutils.unpack_tuple(builder, src.strides)
        (idx,) = _intp_args(context, builder, signature, args)
        inner = shape[1]
        for d in shape[2:]:
            inner = builder.mul(inner, d)
        return _borrowed_view(context, builder, signature.args[0], args[0], signature.return_type,
                              builder.mul(idx, inner), shape[1:], strides[1:])

    return sig, codegen
