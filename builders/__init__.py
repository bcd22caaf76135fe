"""instructkit builders: raw prompt logs and labeler data in, InstructGPT-style SFT / RM / PPO datasets out."""

from builders.errors import InputError
from builders.settings import BuildSettings

__all__ = ["BuildSettings", "InputError", "build"]


def build(*args, **kwargs):
    """Run the whole pipeline; see :func:`builders.pipeline.build`."""
    from builders.pipeline import build as _build

    return _build(*args, **kwargs)
