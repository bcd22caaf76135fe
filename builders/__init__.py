"""instructkit builders: raw prompt logs and labeler data in, InstructGPT-style SFT / RM / PPO datasets out."""

from builders.memory import return_freed_pages_at_once

return_freed_pages_at_once()  # before anything here imports polars: it reads the setting when it loads

from builders.errors import InputError
from builders.settings import BuildSettings

__all__ = ["BuildSettings", "InputError", "build"]


def build(*args, **kwargs):
    """Run the whole pipeline; see :func:`builders.pipeline.build`."""
    from builders.pipeline import build as _build

    return _build(*args, **kwargs)
