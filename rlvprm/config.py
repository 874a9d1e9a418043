"""Recipes and command-line options mapped onto typed dataclasses.

``parse(dataclass_types, argv)`` reads ``--config RECIPE.yaml`` (optional) and then ``--key value``
overrides, and returns one instance per dataclass. Every recipe key must name a field of one of the
dataclasses: an unknown key is an error that lists the valid ones. Help texts come from each field's
``metadata["help"]``, so ``rlvprm COMMAND --help`` documents every option. Several dataclasses can
share one command line: TRL's own config classes pass through unchanged that way.

A recipe may carry ``command: NAME``; when it does, it must match the command being run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml


class ConfigError(ValueError):
    """A recipe or command line that cannot be turned into a config (says what to change)."""


def field(
    default: Any = dataclasses.MISSING, help: str = "", min: float | None = None, max: float | None = None, **kwargs
) -> Any:
    """A dataclass field with its help text and, for numbers, the range ``parse`` accepts (inclusive)."""
    metadata = {"help": help, "min": min, "max": max}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def check_range(name: str, value: Any, metadata: Any) -> None:
    """Raise :class:`ConfigError` when a number lies outside the field's ``min``/``max``.

    The one place ranges are enforced for recipes and command lines (``parse`` calls it per field).
    """
    lo, hi = metadata.get("min"), metadata.get("max")
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if lo is not None and v < lo:
            raise ConfigError(f"option --{name.replace('_', '-')} must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise ConfigError(f"option --{name.replace('_', '-')} must be <= {hi}, got {v}")


class _Mixed:
    """Stands for a union of several types (``str | dict | None``): values pass through as written."""


def _base_type(tp: Any) -> tuple[Any, bool]:
    """The non-None type inside ``Optional[...]``/``X | None``, and whether None is allowed."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        return _Mixed, True
    return tp, False


def _structured(s: Any) -> Any:
    """A recipe's value as written; a command-line string holding JSON (``{...}``/``[...]``) is parsed."""
    if isinstance(s, str) and s.strip()[:1] in ("{", "["):
        try:
            return json.loads(s)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"not valid JSON: {err.msg}") from None
    return s


def _converter(tp: Any):
    base, optional = _base_type(tp)
    if base is _Mixed or base is dict or typing.get_origin(base) is dict:
        # Several types, or a mapping: keep YAML values as they are ("none" stays a string).
        return _structured, None
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        choices = typing.get_args(base)
        return _optional(lambda s: _literal(s, choices), optional), choices
    if origin in (list, tuple, Sequence) or base in (list, tuple):
        inner = (typing.get_args(base) or (str,))[0]
        conv = _converter(inner)[0]

        def to_list(s):
            if isinstance(s, (list, tuple)):
                return [conv(x) for x in s]
            return [conv(x.strip()) for x in str(s).split(",") if x.strip()]

        return _optional(to_list, optional), None
    if base is bool:
        return _optional(_bool, optional), None
    if base is int:
        return _optional(_int, optional), None
    if base is float:
        return _optional(_float, optional), None
    if base is str:
        return _optional(str, optional), None
    return _optional(str, optional), None


def _optional(fn, optional: bool):
    if not optional:
        return fn
    return lambda s: None if s is None or (isinstance(s, str) and s.lower() in ("none", "null", "")) else fn(s)


def _literal(s: str, choices: tuple) -> Any:
    for c in choices:
        if str(c) == str(s):
            return c
    raise argparse.ArgumentTypeError(f"{s!r} is not one of {', '.join(map(str, choices))}")


def _int(s: Any) -> int:
    # int(2.5) would silently give 2: a recipe's `max_steps: 2.5` is a mistake to name, not to round.
    if isinstance(s, bool) or isinstance(s, float):
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}")
    if isinstance(s, int):
        return s
    try:
        return int(str(s).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None


def _float(s: Any) -> float:
    if isinstance(s, bool):
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}")
    try:
        v = float(s)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    # A NaN compares false with every bound and would pass every range check unnoticed.
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def _bool(s: Any) -> bool:
    if isinstance(s, bool):
        return s
    low = str(s).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _fields(dc_type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(dc_type) if f.init]


class _Parser(argparse.ArgumentParser):
    """Usage mistakes become a :class:`ConfigError` (one line, the caller decides the exit) instead of exit 2."""

    def error(self, message: str):
        raise ConfigError(message)


def build_parser(prog: str, description: str, dataclass_types: Sequence[type]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=None, help="YAML recipe; command-line options override its keys")
    seen: set[str] = set()
    hints = {}
    for dc in dataclass_types:
        hints.update(typing.get_type_hints(dc))
        group = parser.add_argument_group(f"{dc.__name__} options")
        for f in _fields(dc):
            if f.name in seen:
                continue
            seen.add(f.name)
            conv, choices = _converter(hints.get(f.name, f.type))
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            )
            help_text = (f.metadata.get("help") or "").replace("%", "%%")
            if dataclasses.MISSING is f.default and f.default_factory is dataclasses.MISSING:
                help_text += " (required)"
            flag = "--" + f.name.replace("_", "-")
            names = [flag] if flag == f"--{f.name}" else [flag, f"--{f.name}"]
            base, optional = _base_type(hints.get(f.name, f.type))
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if lo is not None or hi is not None:
                help_text += " (" + ", ".join(
                    x for x in (lo is not None and f">= {lo}", hi is not None and f"<= {hi}") if x) + ")"
            if default is not None and default != "" and default != []:
                help_text += f" [default: {default}]"
            # SUPPRESS: only options given on the command line override the recipe.
            kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=help_text)
            if base is bool:
                kwargs.update(nargs="?", const=True, type=conv, metavar="BOOL")
            elif not optional and (typing.get_origin(base) in (list, tuple, Sequence) or base in (list, tuple)):
                # A list option given twice adds up: --rl a --rl b is --rl a,b (still replacing the recipe's).
                kwargs.update(type=conv, action="extend")
            else:
                kwargs.update(type=conv)
                if choices:
                    kwargs["metavar"] = "{" + ",".join(map(str, choices)) + "}"
            group.add_argument(*names, **kwargs)
    return parser


def parse(
    dataclass_types: Sequence[type], argv: Sequence[str] | None = None, prog: str = "rlvprm", description: str = "",
    command: str | None = None, ranges: dict[str, dict[str, float]] | None = None,
) -> list[Any]:
    """Parse ``--config`` and overrides into one instance of each of ``dataclass_types``.

    ``ranges`` adds ``{"min": .., "max": ..}`` bounds by field name for dataclasses whose fields rlvprm does
    not declare (TRL's ``GRPOConfig``): a negative batch size is named here, not deep inside TRL.
    """
    ranges = ranges or {}
    parser = build_parser(prog, description, dataclass_types)
    args = vars(parser.parse_args(argv))
    recipe_path = args.pop("config", None)
    values: dict[str, Any] = {}
    if recipe_path:
        values.update(load_recipe(recipe_path, dataclass_types, command))
    values.update(args)
    out = []
    for dc in dataclass_types:
        hints = typing.get_type_hints(dc)
        kwargs = {}
        for f in _fields(dc):
            if f.name in values:
                raw = values[f.name]
                conv, _ = _converter(hints.get(f.name, f.type))
                try:
                    kwargs[f.name] = raw if raw is None else conv(raw)
                except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
                    raise ConfigError(f"option {f.name}: {err}") from None
                check_range(f.name, kwargs[f.name], ranges.get(f.name, f.metadata))
        missing = [
            f.name for f in _fields(dc)
            if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"missing required option(s): {', '.join('--' + m.replace('_', '-') for m in missing)}")
        try:
            out.append(dc(**kwargs))
        except (ValueError, TypeError) as err:
            raise ConfigError(str(err)) from None
    return out


def load_recipe(path: str | Path, dataclass_types: Sequence[type], command: str | None = None) -> dict[str, Any]:
    """A recipe's keys, checked against the dataclasses' fields."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"recipe {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of option: value")
    recipe_command = data.pop("command", None)
    if command is not None and recipe_command is not None and recipe_command != command:
        raise ConfigError(f"recipe {path} is for `rlvprm {recipe_command}`, not `rlvprm {command}`")
    known = {f.name for dc in dataclass_types for f in _fields(dc)}
    unknown = sorted(k for k in data if k.replace("-", "_") not in known)
    if unknown:
        raise ConfigError(
            f"recipe {path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}"
        )
    return {k.replace("-", "_"): v for k, v in data.items()}
