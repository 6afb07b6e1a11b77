"""`TokenRenewer`: renews a Vault token in a background thread at ~2/3 of its TTL.

It only schedules; the renewal call itself (and its error translation) comes from vault.py.
Must never: log the token or raise out of the thread (failures are logged and recorded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from entrypoint.errors import VaultAuthError, VaultError

log = logging.getLogger(__name__)

RENEW_FRACTION = 2 / 3
"""Renew when this share of the TTL has passed."""


class TokenRenewer:
    """Calls `renew()` (returns the new TTL in seconds) until `stop()`.

    A refused renewal (VaultAuthError) or a token at its max TTL ends the thread and sets
    `failed`; other VaultErrors are retried sooner while the token is still valid.
    """

    def __init__(self, renew: Callable[[], int], ttl_s: int, *, join_timeout_s: float) -> None:
        self._renew = renew
        self._ttl = ttl_s
        self._join_timeout = join_timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vault-token-renewal",
                                        daemon=True)
        self.failed = False

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait for it (bounded)."""
        self._stop.set()
        self._thread.join(timeout=self._join_timeout)

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def _loop(self) -> None:
        ttl = self._ttl
        expires = time.monotonic() + ttl
        wait = ttl * RENEW_FRACTION
        while not self._stop.wait(wait):
            try:
                ttl = self._renew()
            except VaultAuthError:
                log.warning("vault token renewal was refused; the token will expire")
                self.failed = True
                return
            except VaultError:
                left = expires - time.monotonic()
                if left <= 0:
                    log.warning("vault token renewal failed until the token expired")
                    self.failed = True
                    return
                log.warning("vault token renewal failed; retrying")
                wait = max(0.5, left / 3)
                continue
            if ttl < 2:  # at its max TTL: renewing cannot extend it any more
                log.warning("vault token reached its maximum TTL; renewal stops")
                self.failed = True
                return
            expires = time.monotonic() + ttl
            wait = ttl * RENEW_FRACTION
