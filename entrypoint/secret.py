"""`Secret`: key material held in a bytearray that never prints itself.

SECURITY: repr/str never reveal the value; `wipe()` overwrites the bytes in place.
"""

from __future__ import annotations

import secrets as _secrets


class Secret:
    """A secret value. Use `reveal()` only at the point of use, then `wipe()`."""

    __slots__ = ("_buf",)

    def __init__(self, value: bytes | bytearray | str) -> None:
        data = value.encode() if isinstance(value, str) else value
        self._buf = bytearray(data)

    @classmethod
    def generate(cls, nbytes: int = 32) -> "Secret":
        """A fresh random secret, hex-encoded (printable, safe for gocryptfs stdin)."""
        return cls(_secrets.token_hex(nbytes))

    def reveal(self) -> bytearray:
        """The live buffer (not a copy), so wiping it wipes what the caller saw."""
        return self._buf

    def reveal_str(self) -> str:
        """A str copy for APIs that need one (hvac); Python cannot wipe str, keep it short-lived."""
        return self._buf.decode()

    def wipe(self) -> None:
        """Overwrite the bytes with zeros and empty the buffer."""
        for i in range(len(self._buf)):
            self._buf[i] = 0
        self._buf.clear()

    def __len__(self) -> int:
        return len(self._buf)

    def __bool__(self) -> bool:
        return bool(self._buf)

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return _secrets.compare_digest(bytes(self._buf), bytes(other._buf))

    def __hash__(self) -> int:
        raise TypeError("Secret is unhashable")

    def __reduce__(self) -> object:
        raise TypeError("Secret cannot be pickled")
