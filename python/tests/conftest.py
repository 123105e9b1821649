import os
import sys

# The package is imported from the source tree (python/), where build.py
# puts the library; spawned workers inherit this path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
