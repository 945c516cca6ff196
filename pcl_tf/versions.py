"""The versions of an export base directory, as TF Serving reads them: ``<export_base>/<N>/`` for
each positive integer N. Listing them, the next free one, and checking before anything is written
that a version can be exported (:func:`check_destination`). No TensorFlow: ``pcl-export`` and
``pcl-train --export_dir`` check their destination before TensorFlow loads.
"""

from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

import numpy as np

_VERSION_NAME = re.compile(r"^[0-9]+$")


class ExportError(ValueError):
    """An export destination or version that cannot be used; the message says what to do."""


def existing_versions(export_base: str) -> List[int]:
    """The versions under ``export_base`` (children named by a non-negative integer), sorted."""
    if not os.path.isdir(export_base):
        return []
    return sorted(int(name) for name in os.listdir(export_base) if _VERSION_NAME.match(name))


def next_version(export_base: str) -> int:
    """One more than the highest version under ``export_base``; 1 when there is none."""
    return max(existing_versions(export_base), default=0) + 1


def check_destination(export_base: str, version: Optional[int] = None) -> Tuple[str, int]:
    """Checks, writing nothing, that ``version`` can be exported under ``export_base``.

    Returns the absolute base and the version (the next free one when ``version`` is None).
    Raises :class:`ExportError` for a version that is not a positive integer or already exists
    (as ``7`` or as ``007``, which TF Serving reads as the same version), or a base that is not a
    directory or cannot be created or written.
    """
    if not export_base:
        raise ExportError("give an export dir, e.g. exports/<model_name>; versions are written under it")
    base = os.path.abspath(export_base)
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
            raise ExportError(f"version {version!r} is not a positive integer; TF Serving versions are 1, 2, ...")
        version = int(version)
    if os.path.exists(base):
        if not os.path.isdir(base):
            raise ExportError(f"export dir {base} is a file, not a directory; choose another")
        if not os.access(base, os.W_OK | os.X_OK):
            raise ExportError(f"export dir {base} is not writable; choose another or fix its permissions")
        if version is None:
            version = next_version(base)
        elif version in existing_versions(base):
            raise ExportError(
                f"version {version} already exists in {base}; exports are never overwritten: "
                f"choose another version or leave it out to write {next_version(base)}"
            )
        return base, version
    parent = os.path.dirname(base)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ExportError(f"cannot create export dir {base}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot create export dir {base}: {parent} is not writable")
    return base, 1 if version is None else version
