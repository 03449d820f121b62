"""What the tests under the CUDA simulator share besides tests/helpers.py: device arrays
filled with NaN, and one kernel run on the reference and on CUDA side by side."""

import numpy as np

from fastmlp.kernels import cuda as kc
from fastmlp.kernels import reference as ref


def nan_device(shape, dtype):
    return kc.to_device(np.full(shape, np.nan, dtype))


def run_both(fname, args, out=(), inout=(), cuda_kwargs=None):
    """Run reference.fname on host copies and cuda.fname on device copies of `args`.

    Positions in `out` are NaN-filled outputs, positions in `inout` are updated in place;
    every other array must come back unchanged from the CUDA kernel. Returns
    (ref_result, ref_args, cuda_result, cuda_args_on_host).
    """
    ref_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    dev_args = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            if i in out:
                ref_args[i].fill(np.nan)
                dev_args.append(nan_device(a.shape, a.dtype))
            else:
                dev_args.append(kc.to_device(a))
        else:
            dev_args.append(a)
    r = getattr(ref, fname)(*ref_args)
    c = getattr(kc, fname)(*dev_args, **(cuda_kwargs or {}))
    back = []
    for i, (a, d) in enumerate(zip(args, dev_args)):
        if isinstance(a, np.ndarray):
            h = kc.to_host(d)
            assert h.dtype == a.dtype and h.shape == a.shape
            if i not in out and i not in inout:
                np.testing.assert_array_equal(h, a, err_msg=f"cuda.{fname} modified argument {i}")
            back.append(h)
        else:
            back.append(a)
    return r, ref_args, c, back
