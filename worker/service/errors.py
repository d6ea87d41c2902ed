"""The error tree's old path, kept for callers: it lives in ``worker.errors``, a leaf every layer imports."""

from worker.errors import *  # noqa: F403  (every public name, so a new error needs no second listing here)
from worker.errors import __all__  # noqa: F401
