"""Memory functions of the host backends (cpu and reference): their arrays are NumPy
arrays in host memory. The CUDA backend has its own, for device arrays."""

import numpy as np

__all__ = ["empty", "zeros", "to_device", "asarray", "write", "to_host", "synchronize"]


def empty(shape, dtype):
    """An uninitialised array of this backend."""
    return np.empty(shape, dtype)


def zeros(shape, dtype):
    """A zero-filled array of this backend."""
    return np.zeros(shape, dtype)


def to_device(host):
    """This backend's array holding a copy of the host array `host` (here: a plain copy)."""
    return np.array(host, copy=True)


def asarray(host):
    """This backend's view of host data: the array itself here (no copy), an upload on CUDA."""
    return host


def write(dst, host):
    """Copy the host array `host` into this backend's array `dst` (same shape)."""
    dst[...] = host


def to_host(arr):
    """A host NumPy copy of this backend's array `arr`."""
    return np.array(arr, copy=True)


def synchronize():
    """Wait for all queued work (nothing is queued on the host)."""
