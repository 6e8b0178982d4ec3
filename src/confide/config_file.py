"""The config file of `confide serve --config FILE`: TOML whose keys are the long flags
of `confide serve`, written with `_` or `-` (`media_grace = 30`, `turn-url = [...]`).
Each value is checked as its flag would be, and a flag on the command line wins over
the file. `confide config check FILE` reads a file the same way and names the line of
anything wrong. docs/config.md has an example with every key.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path
from typing import Any

NOT_KEYS = {"help", "config"}
"""Flags that are not settings: they have no key in the file."""


class ConfigError(Exception):
    """What is wrong with a config file, as `FILE:LINE: what`."""


def _line_of(text: str, key: str) -> int:
    """The line a top-level key is set on, for messages (tomllib does not say)."""
    pattern = re.compile(rf"^[ \t]*[\"']?{re.escape(key)}[\"']?[ \t]*=", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _convert(action: argparse.Action, value: Any) -> Any:
    """A TOML value as the flag's own parsing would give it; ValueError if it is not one."""
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_convert_one(action, item) for item in items]
    return _convert_one(action, value)


def _convert_one(action: argparse.Action, value: Any) -> Any:
    if isinstance(value, (bool, dict, list)):
        raise ValueError("must be a single number or string")
    if isinstance(value, float) and action.type is int:
        raise ValueError("must be a whole number")
    convert = action.type or str
    try:
        converted = convert(str(value))  # type: ignore[operator]
    except argparse.ArgumentTypeError as error:
        raise ValueError(str(error)) from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"must be one of {', '.join(map(str, action.choices))}")
    return converted


def read_config(path: Path, serve: argparse.ArgumentParser) -> dict[str, Any]:
    """The file's settings as `serve`'s defaults, by flag destination. Raises ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it: {error}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not TOML: {error}") from None
    actions = {action.dest: action for action in serve._actions
               if action.option_strings and action.dest not in NOT_KEYS}
    defaults: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{path}:{_line_of(text, key)}"
        action = actions.get(key.replace("-", "_"))
        if action is None:
            raise ConfigError(f"{where}: unknown key '{key}' (the keys are the flags of"
                              " `confide serve --help`, without the dashes)")
        if action.dest in defaults:
            raise ConfigError(f"{where}: '{key}' is set twice")
        try:
            defaults[action.dest] = _convert(action, value)
        except ValueError as error:
            raise ConfigError(f"{where}: {key}: {error}") from None
    return defaults
