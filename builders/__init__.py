"""instructkit builders: raw prompt logs and labeler data in, InstructGPT-style SFT / RM / PPO datasets out."""

import os

# polars' allocator (jemalloc) keeps the pages of freed frames until something allocates again (polars asks for a
# 0.5 s decay, but jemalloc purges only on later allocations), and a build's driver allocates little while PII runs:
# the pages of dedup's and the cap's peaks stayed resident through pass 2, where a whole build peaks. Returned at once,
# pass 2 peaks lower at the same speed (docs/benchmarks.md, memory). polars reads this when it loads, after its own
# defaults, so it is set before anything here imports polars; a value the user set is kept.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")

from builders.errors import InputError
from builders.settings import BuildSettings

__all__ = ["BuildSettings", "InputError", "build"]


def build(*args, **kwargs):
    """Run the whole pipeline; see :func:`builders.pipeline.build`."""
    from builders.pipeline import build as _build

    return _build(*args, **kwargs)
