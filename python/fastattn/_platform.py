"""The shared library's file name on this platform (shared by build.py,
which loads this file alone, and _lib.py)."""

import sys


def library_name():
    if sys.platform == "darwin":
        return "libfastattn.dylib"
    if sys.platform == "win32":
        return "fastattn.dll"
    return "libfastattn.so"
