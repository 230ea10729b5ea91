"""hashbench: a benchmark suite for deep learning-to-hash methods.

Import stays light: heavy modules (torch, lightning) are imported by the subpackages that need them.
"""

__version__ = "0.1.0"
