#!/usr/bin/env python3
"""Builds the Go shared library the fastattn Python package loads:

    python3 python/build.py [--output PATH]

It runs `go build -buildmode=c-shared -tags fastattn_capi ./capi` in the
repository (needs Go and a C compiler, for cgo) and writes
python/fastattn/libfastattn.so (.dylib on macOS). Afterwards
`PYTHONPATH=python python3 -c "import fastattn"` works.
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _platform():
    # fastattn/_platform.py alone: importing the package would load the
    # library this script builds.
    spec = importlib.util.spec_from_file_location(
        "_fastattn_platform", os.path.join(HERE, "fastattn", "_platform.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


library_name = _platform().library_name


def build(output=None, root=ROOT):
    output = os.path.abspath(output or os.path.join(HERE, "fastattn", library_name()))
    go = shutil.which("go")
    if go is None:
        sys.exit("build.py: the go command is not on PATH; install Go (https://go.dev/dl/)")
    env = dict(os.environ, CGO_ENABLED="1")
    cmd = [go, "build", "-buildmode=c-shared", "-tags", "fastattn_capi", "-trimpath",
           "-o", output, "./capi"]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=root, env=env, check=True)
    # The C header is of no use to ctypes.
    header = os.path.splitext(output)[0] + ".h"
    if os.path.exists(header):
        os.remove(header)
    return output


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", help="where to write the library (default: python/fastattn/)")
    args = ap.parse_args()
    try:
        print(build(args.output))
    except subprocess.CalledProcessError as e:
        sys.exit("build.py: go build failed (exit %d); cgo needs a C compiler (gcc or clang)" % e.returncode)


if __name__ == "__main__":
    main()
