"""A callable the user names as 'module:name' (--train-fn, estimate's --model), imported
from the current directory or the installed packages, or one line naming what is wrong."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from raysim.errors import ConfigError


def load_callable(flag: str, spec: str, kind: str) -> Callable:
    """The callable `spec` names; `kind` is what it should be ("function", "factory")."""
    module_name, _, name = spec.partition(":")
    fix = f"give module:{kind}, importable from the current directory"
    if not module_name or not name:
        raise ConfigError([f"{flag} {spec}: not of the form module:{kind}; {fix}"])
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the user's module: any error in it means it does not import
        why = f"{type(err).__name__}: {err}"
        problem = f"{flag} {spec}: cannot import {module_name!r} ({why}); {fix}"
        raise ConfigError([problem]) from None
    found = getattr(module, name, None)
    if not callable(found):
        raise ConfigError([f"{flag} {spec}: {module_name} has no {kind} {name!r}"])
    return found
