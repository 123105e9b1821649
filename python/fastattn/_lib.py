"""Loading of the Go shared library (libfastattn) and its C ABI, via ctypes.

The library is built by ``python3 python/build.py`` (Go and a C compiler)
into this directory. It embeds the Go runtime, which starts threads when the
library loads: do not fork the process afterwards (use the multiprocessing
"spawn" start method, as torch.multiprocessing.spawn does).
"""

import ctypes
import json
import os

import numpy as np

from ._platform import library_name

ABI_VERSION = 4

# dtype codes of capi/core.go.
FLOAT32, FLOAT64, BOOL, INT64, FLOAT16, BFLOAT16 = 1, 2, 3, 4, 5, 6
_CODES = {np.dtype(np.float32): FLOAT32, np.dtype(np.float64): FLOAT64,
          np.dtype(np.bool_): BOOL, np.dtype(np.int64): INT64, np.dtype(np.float16): FLOAT16}

# status codes of capi/core.go.
OK, INVALID, UNSUPPORTED, UNKNOWN_OPTION, INTERNAL = 0, 1, 2, 3, 4


class Array(ctypes.Structure):
    """fa_array: a C-contiguous array owned by Python."""
    _fields_ = [("data", ctypes.c_void_p),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("rank", ctypes.c_int32),
                ("dtype", ctypes.c_int32)]


def library_path():
    return os.environ.get("FASTATTN_LIBRARY") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), library_name())


def _load():
    path = library_path()
    if not os.path.exists(path):
        raise ImportError(
            "fastattn: the Go library %s is not built; run `python3 python/build.py` "
            "in the fastattn repository (needs Go and a C compiler)" % path)
    # CDLL (not PyDLL) releases the GIL during every call.
    lib = ctypes.CDLL(path)
    A = ctypes.POINTER(Array)
    # Strings the library allocates come back as void pointers so that
    # they can be freed with fastattn_free after decoding.
    P = ctypes.POINTER(ctypes.c_void_p)
    lib.fastattn_attend.argtypes = [A, A, A, ctypes.c_char_p, A, A, A, A, A, P, P]
    lib.fastattn_attend.restype = ctypes.c_int
    lib.fastattn_gradient.argtypes = [A, A, A, ctypes.c_char_p, A, A, A, A, A,
                                      ctypes.c_char_p, A, A, A, A, A, P, P]
    lib.fastattn_gradient.restype = ctypes.c_int
    lib.fastattn_merge.argtypes = [ctypes.c_int32, A, A, A, A, P]
    lib.fastattn_merge.restype = ctypes.c_int
    lib.fastattn_info.argtypes = []
    lib.fastattn_info.restype = ctypes.c_void_p
    lib.fastattn_go_total_alloc.argtypes = []
    lib.fastattn_go_total_alloc.restype = ctypes.c_int64
    lib.fastattn_set_worker_poll.argtypes = [ctypes.c_int64]
    lib.fastattn_set_worker_poll.restype = ctypes.c_int64
    lib.fastattn_free.argtypes = [ctypes.c_void_p]
    lib.fastattn_free.restype = None
    return lib


lib = _load()

# The Go runtime's threads do not survive fork(): a forked child that calls
# the library would hang or crash. Remember the fork and refuse instead.
_forked = False


def _after_fork_in_child():
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def check_not_forked():
    if _forked:
        raise RuntimeError(
            "fastattn: this process was forked after the Go library was loaded, and the Go "
            "runtime does not survive fork(); start worker processes with the spawn method "
            "(multiprocessing.set_start_method('spawn') or torch.multiprocessing.spawn)")


def take_string(ptr):
    """Decodes and frees a string the library returned."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        lib.fastattn_free(ptr)


INFO = json.loads(take_string(lib.fastattn_info()))
if INFO.get("abi") != ABI_VERSION:
    raise ImportError("fastattn: %s has C ABI version %s but this package needs %d; "
                      "rebuild it with `python3 python/build.py`"
                      % (library_path(), INFO.get("abi"), ABI_VERSION))


def describe(a, code=None):
    """An Array for the C-contiguous NumPy array a (of dtype code `code`,
    by default a's); keep the returned tuple alive during the call (it owns
    the shape buffer)."""
    shape = (ctypes.c_int64 * max(a.ndim, 1))(*a.shape)
    desc = Array(a.ctypes.data if a.size else None, shape, a.ndim, code or _CODES[a.dtype])
    return desc, shape, a
