"""Command-line flags generated from a settings dataclass, so each setting is written once: its name, type, default,
allowed values and help text live on the dataclass field, and the flag, the YAML key and the error that names a bad
value all come from there (as `transformers.HfArgumentParser` does for TRL's scripts).

A field's metadata may hold `help`, `choices`, `flag` (another spelling, e.g. `--source` for `sources`),
`metavar` and `cli: False` (not a flag). Flags default to None, so only the flags a user gave override the config
file and the dataclass defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from builders.errors import InputError


def setting(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,  # noqa: A002
            **meta) -> Any:
    """A dataclass field with its help text and flag metadata."""
    kw = {"default": default} if default_factory is dataclasses.MISSING else {"default_factory": default_factory}
    return dataclasses.field(metadata={"help": help, **meta}, **kw)


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def flag_names(cls) -> dict[str, str]:
    """field name → the flag that sets it."""
    return {f.name: flag_name(f) for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}


def check_choices(obj) -> None:
    """Raise InputError for a field whose value is not one of its declared `choices`."""
    for f in dataclasses.fields(obj):
        allowed = f.metadata.get("choices")
        if allowed and getattr(obj, f.name) not in allowed:
            raise InputError(f"must be one of {', '.join(allowed)}, got {getattr(obj, f.name)!r}", field=f.name)


def _parse_mapping(text: str) -> dict[str, float]:
    """`train=0.8,validation=0.1,test=0.1` → a dict of floats."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        try:
            if not eq:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAME=NUMBER[,NAME=NUMBER...], got {text!r}") from None
    return out


def _comma_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _base(tp):
    """X for `X | None` / Optional[X]."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return ""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return f" (default: {str(value).lower()})"
    if isinstance(value, dict):
        value = ",".join(f"{k}={v}" for k, v in value.items())
    elif isinstance(value, list):
        value = ",".join(map(str, value))
    return f" (default: {value})"


def add_flags(parser: argparse.ArgumentParser, cls, *, exclude: tuple[str, ...] = ()) -> None:
    """One flag per field of `cls` (see the module doc)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude or not f.metadata.get("cli", True):
            continue
        tp = _base(hints[f.name])
        origin = typing.get_origin(tp)
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": f.metadata["help"] + _default_text(f)}
        if "metavar" in f.metadata:
            kw["metavar"] = f.metadata["metavar"]
        if f.metadata.get("choices"):
            kw["choices"] = list(f.metadata["choices"])
        if tp is bool:
            kw.update(type=_bool, nargs="?", const=True, metavar="{true,false}")
        elif origin is list and f.metadata.get("repeat"):
            kw["action"] = "append"
        elif origin is list:
            kw.update(type=_comma_list, metavar=kw.get("metavar", "A,B,..."))
        elif origin is dict:
            kw.update(type=_parse_mapping, metavar=kw.get("metavar", "NAME=NUMBER,..."))
        elif tp in (int, float):
            kw["type"] = tp
        parser.add_argument(flag_name(f), **kw)


def given(args: argparse.Namespace, cls) -> dict[str, Any]:
    """The fields of `cls` whose flags were given, with their values."""
    return {name: getattr(args, name) for name in flag_names(cls) if getattr(args, name, None) is not None}
