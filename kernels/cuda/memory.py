"""Device arrays: allocation, zero fill on the device, copies both ways."""

import numpy as np

from .device import THREADS, _alloc, _blocks, _is_device, _kernel, _launch, _require, _reshape, cuda

@_kernel
def _k_fill1(a, value):
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = value


# ---------------------------------------------------------------------------------------
# memory: device arrays


def empty(shape, dtype):
    """An uninitialised device array."""
    return _alloc(shape, dtype)


def _zero_fill(a):
    """Set the device array `a` (contiguous) to zero in place, on the device."""
    if a.size:
        _launch(_k_fill1, _blocks(a.size), THREADS, _reshape(a, (a.size,)), 0)


def zeros(shape, dtype):
    """A zero-filled device array (filled on the device, no host transfer)."""
    a = _alloc(shape, dtype)
    _zero_fill(a)
    return a


def to_device(host):
    """A device array holding a copy of `host` (a NumPy array, or a device array)."""
    _require()
    if _is_device(host):
        out = cuda.device_array(host.shape, host.dtype)
        out.copy_to_device(host)
        return out
    return cuda.to_device(np.ascontiguousarray(host))


def asarray(host):
    """The host array `host` on the device (one upload; a device array is returned as it is)."""
    if _is_device(host):
        return host
    return to_device(host)


def write(dst, host):
    """Copy the host array `host` into the device array `dst` (same shape; cast to dst's
    dtype as ``dst[...] = host`` would). `host` may also be a device array of dst's dtype."""
    if _is_device(host) and host.dtype == dst.dtype and tuple(host.shape) == tuple(dst.shape):
        dst.copy_to_device(host)
        return
    h = np.asarray(host, dtype=dst.dtype)
    if h.shape != tuple(dst.shape):
        h = np.broadcast_to(h, dst.shape)
    # a real copy: broadcast_to and length-1 axes can leave zero strides, which the device
    # copy would read as a broadcast
    h = np.array(h, order="C", copy=True) if 0 in h.strides else np.ascontiguousarray(h)
    if not _is_device(dst):
        dst[...] = h
        return
    dst.copy_to_device(h)


def to_host(arr):
    """A host NumPy copy of the device array `arr` (waits for the work queued before it)."""
    if _is_device(arr):
        return arr.copy_to_host()
    return np.array(arr, copy=True)


def synchronize():
    """Wait until all queued GPU work is done."""
    if cuda is not None:
        cuda.synchronize()
