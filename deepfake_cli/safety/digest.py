"""The sha256 of a JSON dump (keys sorted): the identity of an extraction run, a study's cache entry, a
fine-tuning run's image list. Changing how it is computed changes every stored key: it must not change."""

from __future__ import annotations

import hashlib
import json
from typing import Callable


def json_sha256(obj, default: Callable | None = None):
    """A hashlib sha256 object fed the JSON text of `obj` (sort_keys; `default` as for json.dumps), for
    callers that go on to hash more."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=default).encode())


def json_digest(obj, n: int | None = None, default: Callable | None = None) -> str:
    """The hex sha256 of `obj`'s JSON text (sort_keys), its first `n` digits when `n` is given."""
    return json_sha256(obj, default).hexdigest()[:n]
