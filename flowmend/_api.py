"""The one public-API mechanism of flowmend's packages: names listed by home module, loaded on
first use, with `__all__` checked against them when the package is imported.

    # flowmend/llm/__init__.py
    from flowmend import _api
    _api.public_api(__name__, globals(), {"_broker": ("Broker", "BrokerClosed"), ...})

Loading on first use keeps `flowmend --help` from importing libcst, vLLM or the sandbox. The
check at import (as Hypothesis's `strategies/__init__.py` does with its own `__all__`) fails
loudly when the listing and the package disagree: a name listed twice, a public name the
package defines but does not list, or a listed home module that does not exist. A test resolves
every listed name, so a name listed but not defined in its home fails the suite.
"""

from __future__ import annotations

import importlib
import importlib.util
import types
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["public_api"]

HERE = "."  # the home of names defined in the package's `__init__.py` itself


def public_api(package: str, namespace: dict[str, Any],
               exports: Mapping[str, Iterable[str]]) -> None:
    """Give `package` its `__all__`, a lazy `__getattr__` and `__dir__`, after checking them.

    Args:
        package: the package's `__name__`.
        namespace: the package's `globals()`.
        exports: home module (relative, ``"_broker"``; or `HERE`) -> the public names it holds.
    """
    where: dict[str, str] = {}
    for module, names in exports.items():
        for name in names:
            if name in where:
                raise ImportError(f"{package}: {name!r} is listed twice "
                                  f"({where[name]} and {module})")
            where[name] = module
        if module != HERE and importlib.util.find_spec(f"{package}.{module}") is None:
            raise ImportError(f"{package}: listed module {module!r} does not exist")
    unlisted = sorted(
        name for name, value in namespace.items()
        if not name.startswith("_") and name not in where
        and not isinstance(value, types.ModuleType)  # submodules appear once imported
        and getattr(value, "__module__", package) == package  # defined here, not imported
        and name != "annotations"
    )
    if unlisted:
        raise ImportError(f"{package}: public name(s) defined but not in __all__: "
                          f"{', '.join(unlisted)}")
    missing = sorted(n for n, m in where.items() if m == HERE and n not in namespace)
    if missing:
        raise ImportError(f"{package}: listed as defined here but not defined: {', '.join(missing)}")

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None or module == HERE:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # later look-ups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    namespace["__all__"] = sorted(where)
    namespace["__getattr__"] = __getattr__
    namespace["__dir__"] = __dir__
