"""What the marginal sampler's two C callbacks share: their signatures, the buffer they read
and the call from one to the other.

``marginal_cfunc.LOGP_CFUNC`` (the log posterior nutpie calls) and
``kernel_cfunc.kernel_callback()`` (the likelihood kernel, ``KERNEL_SIG``) are compiled
separately, each exactly once, and cached by numba separately: the posterior callback (and
the partial sampler's density) call the kernel through its address (``call_kernel``; the
address travels in the buffer) instead of linking it in.  Linking makes numba re-optimize
the whole kernel inside every caller (~2 s each on a 2-core VM), and separate compiles can
run at once, in two processes, on a machine whose cache is empty
(``kernel_cfunc.compile_in_background``).

The buffer (``pack``) is float64 with integer fields stored as int64 bit patterns:

    header (HEADER words): size, q1, n_cpc, n_rest, p, m1, r, kernel address (int64);
                           eta, n_obs (float64)
    body: A (m1 q1 q1), C (r m1 q1), CR (r r), rest (n_rest x 2 int64: levels, columns),
          rest_meta (n_rest x 2 int64: columns, CPCs), rest_eta (n_rest), mu0, wprior,
          scale-prior family codes (int64), first and second parameters, SD pivots
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, types
from numba.core import errors
from numba.extending import intrinsic

from .jit import internal

__all__ = ["HEADER", "LOGP_SIG", "EXPAND_SIG", "KERNEL_SIG", "pack", "unpack", "address_caller",
           "call_kernel", "kernel_logp_grad"]

HEADER = 10

_DOUBLES = types.CPointer(types.double)
# nutpie's: logp(dim, theta, grad_out, logp_out, user_data) and expand(...)
LOGP_SIG = types.int64(types.uint64, _DOUBLES, _DOUBLES, _DOUBLES, types.voidptr)
EXPAND_SIG = types.int64(types.uint64, types.uint64, _DOUBLES, _DOUBLES, types.voidptr)
# marginal_kernel.marginal_logp_grad_c(m1, q1, r, p, n_rest, n_obs, A, C, CR, rest,
#     mu0, wprior, chol_first, chol_rest, sigma, g_chol, g_rest, modes_x, modes_b1, out,
#     n_noise, noise)
KERNEL_SIG = types.int64(*[types.int64] * 5, types.double, *[_DOUBLES] * 3,
                         types.CPointer(types.int64), *[_DOUBLES] * 4, types.double,
                         *[_DOUBLES] * 5, types.int64, _DOUBLES)


def pack(post, kernel_address: int) -> np.ndarray:
    """The buffer both callbacks read, for a ``MarginalPosterior`` and the address of the
    compiled kernel callback."""
    cross_first, cross, cross_rest, rest, mu0, wprior, n_obs = post.kernel_arrays
    m1, q1 = cross_first.shape[0], cross_first.shape[1]
    r, p = cross_rest.shape[0], len(mu0)
    parts = [cross_first.ravel(), cross.ravel(), cross_rest.ravel(), rest.ravel(),
             post.rest_meta.ravel(), post.rest_eta, mu0, wprior, post.family, post.param_a,
             post.param_b, post.pivot]
    size = HEADER + sum(part.size for part in parts)
    buf = np.zeros(size)
    ints = buf.view(np.int64)
    ints[:8] = [size, q1, post.n_cpc, post.n_rest, p, m1, r, kernel_address]
    buf[8:HEADER] = [post.eta, n_obs]
    at = HEADER
    for part in parts:
        target = ints if part.dtype.kind in "iu" else buf
        target[at:at + part.size] = part
        at += part.size
    return buf


@internal
def unpack(data_ptr):  # pragma: no cover - jit
    """Views of the buffer ``pack`` wrote: (q1, n_cpc, n_rest, kernel address, eta, n_obs,
    A, C, CR, rest, rest_meta, rest_eta, mu0, wprior, family, pa, pb, pivot)."""
    size = carray(data_ptr, (1,), np.int64)[0]
    buf = carray(data_ptr, (size,), np.float64)
    ints = carray(data_ptr, (size,), np.int64)
    q1, ncpc, n_rest, p, m1, r, kernel = (ints[1], ints[2], ints[3], ints[4], ints[5],
                                          ints[6], ints[7])
    eta, n_obs = buf[8], buf[9]
    at = HEADER
    a = buf[at:at + m1 * q1 * q1].reshape((m1, q1, q1))
    at += m1 * q1 * q1
    c = buf[at:at + r * m1 * q1].reshape((r, m1, q1))
    at += r * m1 * q1
    cr = buf[at:at + r * r].reshape((r, r))
    at += r * r
    rest = ints[at:at + 2 * n_rest].reshape((n_rest, 2))
    at += 2 * n_rest
    rest_meta = ints[at:at + 2 * n_rest].reshape((n_rest, 2))
    at += 2 * n_rest
    rest_eta = buf[at:at + n_rest]
    at += n_rest
    mu0 = buf[at:at + p]
    wprior = buf[at + p:at + 2 * p]
    at += 2 * p
    n_scale = q1 + 1
    for k in range(n_rest):
        n_scale += rest[k, 1]
    family = ints[at:at + n_scale]
    pa = buf[at + n_scale:at + 2 * n_scale]
    pb = buf[at + 2 * n_scale:at + 3 * n_scale]
    pivot = buf[at + 3 * n_scale:at + 4 * n_scale]
    return (q1, ncpc, kernel, eta, n_obs, a, c, cr, rest, rest_meta, rest_eta, mu0, wprior,
            family, pa, pb, pivot)


def address_caller(c_signature):
    """An ``@intrinsic`` ``call(address, args)`` calling the C function of ``c_signature`` at
    ``address`` (int64) with the tuple ``args`` and returning its result.  Checked when the
    caller compiles: pointer arguments take C-contiguous arrays of the pointed-to dtype
    (passed as their data pointers), number arguments any number (cast to the signature's
    type), so a wrong argument is a typing error, never a wrong read."""

    @intrinsic
    def call(typingctx, address, args):
        if not isinstance(args, types.BaseTuple) or len(args) != len(c_signature.args):
            raise errors.TypingError(f"{len(c_signature.args)} arguments needed, got {args}")
        for k, (want, got) in enumerate(zip(c_signature.args, args, strict=True)):
            if isinstance(want, types.CPointer):
                if not (isinstance(got, types.Array) and got.dtype == want.dtype
                        and got.layout == "C"):
                    raise errors.TypingError(f"argument {k}: a C-contiguous {want.dtype} "
                                             f"array is needed, got {got}")
            elif not isinstance(got, types.Number):
                raise errors.TypingError(f"argument {k}: a number is needed, got {got}")

        def codegen(context, builder, signature, llvm_args):
            values = []
            for k, (want, got) in enumerate(zip(c_signature.args, args, strict=True)):
                value = builder.extract_value(llvm_args[1], k)
                if isinstance(want, types.CPointer):
                    value = context.make_array(got)(context, builder, value).data
                else:
                    value = context.cast(builder, value, got, want)
                values.append(value)
            fnty = ir.FunctionType(context.get_value_type(c_signature.return_type),
                                   [context.get_value_type(t) for t in c_signature.args])
            return builder.call(builder.inttoptr(llvm_args[0], fnty.as_pointer()), values)

        return c_signature.return_type(address, args), codegen

    return call


call_kernel = address_caller(KERNEL_SIG)


@internal
def kernel_logp_grad(kernel, chol_first, chol_rest, sigma, A, C, CR, rest, mu0, wprior,
                     n_obs, g_chol, g_rest, modes_x, modes_b1):  # pragma: no cover - jit
    """The kernel callback at address ``kernel`` on arrays, its dimensions read from their
    shapes: fills the gradient and mode arrays, returns (value, d value / d sigma)."""
    out = np.empty(2)
    call_kernel(kernel, (A.shape[0], A.shape[1], CR.shape[0], mu0.shape[0],
                         rest.shape[0], n_obs, A, C, CR, rest, mu0, wprior,
                         chol_first, chol_rest, sigma, g_chol, g_rest, modes_x, modes_b1, out,
                         0, out))
    return out[0], out[1]
