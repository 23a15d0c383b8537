"""Import paths from before the package had folders, kept working for one release with a warning.

An old module path becomes the new module itself (``sys.modules``), so its names, private ones and
patch targets included, are the same objects; an old ``package.name`` is looked up where it moved.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable


def _warn(old: str, new: str, stacklevel: int) -> None:
    """Warns at the importer's line: the frames of this module and of importlib are not the user's."""
    warnings.warn(
        f"{old} moved to {new}; import it from there.", DeprecationWarning, stacklevel=stacklevel + 1
    )


def alias_module(old: str, new: str) -> None:
    """Makes the module being imported as ``old`` the module ``new``, warning whoever imported it."""
    _warn(old, new, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)


def moved_names(package: str, homes: dict[str, str]) -> Callable[[str], object]:
    """A package ``__getattr__`` that finds each of ``homes``' names in its new module, with a warning."""

    def __getattr__(name: str) -> object:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        _warn(f"{package}.{name}", f"{homes[name]}.{name}", stacklevel=2)
        value = getattr(importlib.import_module(homes[name]), name)
        setattr(sys.modules[package], name, value)  # one warning per name, not one per access
        return value

    return __getattr__
