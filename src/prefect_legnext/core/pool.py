"""One HTTP client per credentials and process, shared by every caller.

Building a client costs 30-50 ms here (TLS context, connection pool); a chain step
used to build three. A pooled client keeps its connections open for the next
request and is closed once, at exit. Clients are keyed by a digest of their
settings, so the key never sits in a dictionary key or a repr. After a fork the
child starts with an empty pool: sockets are never shared across processes. Our
decision (Legnext says nothing about connection reuse; httpx clients are thread-safe).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

ClientT = TypeVar("ClientT")


def settings_digest(secret: str, *settings: Hashable) -> str:
    """A pool key: a SHA-256 of the secret and the settings (never the secret itself)."""
    text = "\0".join([secret, *map(repr, settings)])
    return hashlib.sha256(text.encode()).hexdigest()


class ClientPool(Generic[ClientT]):
    """Clients by key, built on first use, closed at interpreter exit.

    Attributes:
        built: clients built by this process (a benchmark figure and a test's count).
    """

    def __init__(self, close: Callable[[ClientT], object]) -> None:
        self._close = close
        self._clients: dict[str, ClientT] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.built = 0
        atexit.register(self.close_all)

    def get(self, key: str, build: Callable[[], ClientT]) -> ClientT:
        """The client under `key`, built by `build` the first time in this process."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's sockets are not ours
                self._clients, self._pid, self.built = {}, os.getpid(), 0
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = build()
                self.built += 1
            return client

    def discard(self, client: ClientT) -> None:
        """Drop and close `client` (e.g. after a transport failure), so that the next
        caller builds a fresh one rather than reuse a broken one."""
        with self._lock:
            keys = [key for key, held in self._clients.items() if held is client]
            for key in keys:
                del self._clients[key]
        if keys:
            self._close(client)

    def close_all(self) -> None:
        """Close every client (at exit; tests call it to start from an empty pool)."""
        with self._lock:
            clients = list(self._clients.values()) if self._pid == os.getpid() else []
            self._clients = {}
        for client in clients:
            self._close(client)
