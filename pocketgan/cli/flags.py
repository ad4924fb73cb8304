"""argparse flags built from a config dataclass, so a setting is named, typed, defaulted and
explained once: in the dataclass field and its ``metadata["help"]``.

    dests = add_config_flags(parser, BenchConfig, flags={"precisions": "--precision"})
    config = BenchConfig(**config_kwargs(args, BenchConfig))

A field ``image_size`` becomes ``--image-size``. From its annotation:

- ``bool``: ``--name`` / ``--no-name`` (``argparse.BooleanOptionalAction``);
- ``tuple[T, ...]``: one or more ``T`` (a list in the namespace, a tuple in the config);
- ``X | None``: an ``X``; ``Path``, ``int``, ``float``, ``str``: that type;
- anything else (``dict``, ``int | str``): no flag unless ``options`` gives it a ``type``.

Help is the field's ``metadata["help"]`` (or ``metadata["cli_help"]`` where a command line
needs other words), plus "(default X)" when the default is not None and the help does
not name one already. A field without a default is a required flag. ``metadata["choices"]``
becomes the flag's choices.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable

_CONFIG_FIELDS = "config_fields"  # namespace attribute: {config class name: {field: dest}}


def _unwrap(hint: Any) -> Any:
    """The type without ``| None`` (a union of several types stays as it is)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _argument(f: dataclasses.Field, hint: Any, option: dict) -> dict | None:
    """argparse keyword arguments for one field, or None when it has no flag."""
    base = _unwrap(hint)
    default = _default_of(f)
    kwargs: dict[str, Any] = {}
    if "choices" in f.metadata:
        kwargs["choices"] = list(f.metadata["choices"])
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(base) is tuple:
        kwargs |= {"nargs": "+", "type": typing.get_args(base)[0]}
    elif base in (int, float, str, Path):
        kwargs["type"] = base
    elif "type" not in option:
        return None
    kwargs["default"] = list(default) if isinstance(default, tuple) else default
    kwargs |= option
    if kwargs["default"] is dataclasses.MISSING:
        del kwargs["default"]
        kwargs.setdefault("required", True)
    text = option.get("help") or f.metadata.get("cli_help") or f.metadata.get("help", "")
    # the command line's own default, else (a flag passed on only when given) the field's
    shown = next((d for d in (kwargs.get("default"), default) if d not in (None, dataclasses.MISSING)), None)
    if shown is not None and base is not bool and "default" not in text:
        text = f"{text} (default {_shown(shown)})".strip()
    kwargs["help"] = text.replace("%", "%%")
    return kwargs


def add_config_flags(
    parser,
    cls: type,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    flags: dict[str, str | tuple[str, ...]] | None = None,
    options: dict[str, dict] | None = None,
    defaults_none: bool = False,
) -> dict[str, str]:
    """Add a flag for each field of dataclass ``cls`` to ``parser`` (a parser or an argument
    group) and return ``{field name: namespace dest}``.

    ``only`` / ``skip``: which fields. ``flags``: other option strings for a field (the
    first gives the dest): ``{"platform": "--for"}``. ``options``: argparse keyword
    arguments that replace the derived ones for a field (``default``, ``type``, ``choices``,
    ``nargs``, ``metavar``, ...). ``defaults_none``: every flag defaults to None, for
    settings that are only passed on when given (the help still names the field's default).
    """
    hints = typing.get_type_hints(cls)
    wanted = set(only) if only is not None else None
    flags, options = flags or {}, options or {}
    dests: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or (wanted is not None and f.name not in wanted):
            continue
        option = dict(options.get(f.name, {}))
        if defaults_none:
            option.setdefault("default", None)
        kwargs = _argument(f, hints[f.name], option)
        if kwargs is None:
            continue
        names = flags.get(f.name, "--" + f.name.replace("_", "-"))
        names = (names,) if isinstance(names, str) else tuple(names)
        action = parser.add_argument(*names, **kwargs)
        dests[f.name] = action.dest
    # an argument group shares its parser's defaults, so this works on either
    known = dict(parser.get_default(_CONFIG_FIELDS) or {})
    known[cls.__name__] = {**known.get(cls.__name__, {}), **dests}
    parser.set_defaults(**{_CONFIG_FIELDS: known})
    return dests


def config_kwargs(args: argparse.Namespace, cls: type, *, drop_none: bool = False) -> dict[str, Any]:
    """The values of ``cls``'s flags in ``args`` as keyword arguments of ``cls`` (lists
    become tuples); ``drop_none``: leave out the flags that were not given."""
    dests = getattr(args, _CONFIG_FIELDS, {}).get(cls.__name__, {})
    values = {name: getattr(args, dest) for name, dest in dests.items()}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return {k: v for k, v in values.items() if v is not None} if drop_none else values
