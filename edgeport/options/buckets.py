"""The ``--buckets`` grammar: ``seq=16,32,64,128`` (an axis name, ``=``, ascending sizes)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeport.core.errors import InputError

_BUCKETS_RE = re.compile(r"^\s*(?P<axis>[A-Za-z_][\w.]*)\s*=\s*(?P<sizes>\d+(?:\s*,\s*\d+)*)\s*$")
HINT = "write it as axis=sizes, e.g. seq=16,32,64,128 (a dynamic dim of the inputs, or a prefix of its name)"


@dataclass(frozen=True)
class BucketSpec:
    """One axis (a dynamic dim name of the model's inputs, or a prefix of one such as ``seq``)
    and the static sizes it is built at, ascending and distinct."""

    axis: str
    sizes: tuple[int, ...]

    def text(self) -> str:
        """Return the canonical spelling (``seq=16,32``), as the manifest and the cache key hold it."""
        return f"{self.axis}=" + ",".join(str(s) for s in self.sizes)


def parse_buckets(value: str | None) -> BucketSpec | None:
    """Parse ``--buckets`` into a BucketSpec (sizes sorted, duplicates dropped); None for no
    buckets. Raises InputError (one line) on a malformed value or a size below 1."""
    if value is None or not str(value).strip():
        return None
    match = _BUCKETS_RE.match(str(value))
    if not match:
        raise InputError(f"bad --buckets {value!r}", hint=HINT)
    sizes = sorted({int(s) for s in match.group("sizes").split(",")})
    if sizes[0] < 1:
        raise InputError(f"bad --buckets {value!r}: every size must be >= 1", hint=HINT)
    return BucketSpec(match.group("axis"), tuple(sizes))
