"""One cache of compiled functions, each kept as long as the object it was built for.

Tracing a ``tf.function`` anew for every batch of an evaluation would cost more than the
attack itself, so every attack compiles once per (model, attack settings) and reuses the
result. The entries hang off the model through a weak reference: a model that is dropped takes
its compiled functions with it.
"""

from __future__ import annotations

import weakref
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def once_per(owner, key: Hashable, build: Callable[[], T]) -> T:
    """``build()``'s result for ``(owner, key)``, built on the first call and reused while
    ``owner`` lives. ``key`` names the function and its settings (start it with the attack's
    name so that two modules never share one)."""
    per_owner = _CACHE.setdefault(owner, {})
    if key not in per_owner:
        per_owner[key] = build()
    return per_owner[key]


def lookup(owner, key: Hashable):
    """The cached entry for ``(owner, key)`` (KeyError if none was built): for tests."""
    return _CACHE[owner][key]
