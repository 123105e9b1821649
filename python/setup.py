"""pip install ./python: builds the Go shared library (python/build.py,
needs Go and a C compiler) into the package. The Go sources are those of the
repository this directory sits in (or FASTATTN_GO_ROOT)."""

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build as golib  # noqa: E402  (python/build.py)


class BuildWithGo(build_py):
    def run(self):
        super().run()
        root = os.environ.get("FASTATTN_GO_ROOT", golib.ROOT)
        if not os.path.exists(os.path.join(root, "go.mod")):
            sys.exit("fastattn: the Go sources are not at %s; build from a checkout of the "
                     "fastattn repository (pip install ./python) or set FASTATTN_GO_ROOT" % root)
        out = os.path.abspath(os.path.join(self.build_lib, "fastattn", golib.library_name()))
        golib.build(out, root=root)


class BinaryDistribution(Distribution):
    # The library is machine code: the wheel is platform-specific.
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithGo}, distclass=BinaryDistribution)
