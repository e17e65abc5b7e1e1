"""Reading configuration values: type conversion, unknown keys, YAML files.

Shared by ``SoFlowConfig`` (loss settings), the run configs of ``soflow_mini.train`` and
their readers of the authors' YAML files, so every entry point converts and rejects values
the same way: a ValueError that names the key and the expected form.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal


def number(value: Any) -> float | None:
    """A finite float from a number or a string ("2e-4", "400_000"); None otherwise.

    Strings matter for YAML: PyYAML follows YAML 1.1, which reads ``1e-2`` (no dot) as a string.
    """
    if isinstance(value, bool):
        return None
    try:
        result = float(value.replace("_", "") if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` (a command-line string, a JSON or YAML value) to the type ``hint``.

    Raises ValueError naming the field ``name`` when the value does not fit.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(name, value, inner)
    if origin is Literal:
        if isinstance(value, str) and value.strip().lower() in args:
            return value.strip().lower()
        if value not in args:
            raise ValueError(f"{name} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{name} expects comma-separated numbers such as 0.9,0.99, got {value!r}")
        types_ = [args[0]] * len(items) if args[-1] is Ellipsis else list(args)
        if len(items) != len(types_):
            raise ValueError(f"{name} expects {len(types_)} comma-separated values, got {value!r}")
        return tuple(coerce(name, v, t) for v, t in zip(items, types_, strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{name} expects true or false, got {value!r}")
    if hint is int:
        if isinstance(value, str) and value.strip().lstrip("-").replace("_", "").isdigit():
            return int(value)  # exact, even beyond float precision
        result = number(value)
        if result is None or not result.is_integer():
            raise ValueError(f"{name} expects an integer, got {value!r}")
        return int(value) if isinstance(value, int) else int(result)
    if hint is float:
        result = number(value)
        if result is None:
            raise ValueError(f"{name} expects a number, got {value!r}")
        return result
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} expects a string, got {value!r}")
        return value
    raise TypeError(f"{name}: unsupported field type {hint}")


def unknown(what: str, key: str, options: Iterable[str]) -> str:
    """'unknown WHAT KEY; did you mean X?' (or the list of options when nothing is close)."""
    options = list(options)
    close = difflib.get_close_matches(key, options, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; choose one of {options}"
    return f"unknown {what} {key}{hint}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; ValueError (or FileNotFoundError) naming the file
    when it is missing, unreadable, empty or not a mapping of names to values."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ValueError(f"{path} is not valid YAML{line}: {getattr(err, 'problem', None) or err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file") from None
    if values is None:
        raise ValueError(f"{path} is empty: expected a mapping of config keys to values")
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of config keys to values, got a {type(values).__name__}")
    bad = [key for key in values if not isinstance(key, str)]
    if bad:
        raise ValueError(f"{path}: keys must be names, got {bad[0]!r}")
    return values
