"""Real network faults in front of a real S3 server, for the storage and ledger tests.

`S3FaultProxy` is a TCP proxy on 127.0.0.1 in front of moto's server. boto3 pointed at
it speaks plain HTTP through it; a `FaultPlan` picks requests (by method and path) and
breaks their connection the way a flaky network or load balancer does:

- ``reset``: forward part of the request, then reset both connections (SO_LINGER 0):
  S3 never gets the whole request; the client sees "Connection reset by peer".
- ``cut``: forward the request, S3's answer's header and half its body, then close:
  the client gets a truncated body (IncompleteRead). For answers with a body.
- ``lose``: forward the request, let S3 process it, swallow its whole answer and
  reset the client's connection: the write happened, its answer is lost.
- ``flip``: forward the request with one byte of its body changed: a body damaged on
  the way, which S3 stores as it got it (moto checks no checksum).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from prefect_aws import S3Bucket

Fault = Literal["reset", "cut", "lose", "flip"]
_METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ")


@dataclass
class FaultPlan:
    """Break the next `times` requests whose method is `method` (any when None) and whose
    request line contains `path` (bytes); count what was broken."""

    fault: Fault
    times: int
    method: str | None = None
    path: str = ""
    broken: int = 0
    seen: list[str] = field(default_factory=list)  # request lines, for test messages
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, head: bytes) -> Fault | None:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        with self._lock:
            self.seen.append(line)
            verb, _, rest = line.partition(" ")
            if self.broken >= self.times or (self.method and verb != self.method):
                return None
            if self.path not in rest:
                return None
            self.broken += 1
            return self.fault


class S3FaultProxy:
    """A TCP proxy on loopback to `target_url` (``http://host:port``) that breaks the
    requests its `plan` picks. ``endpoint_url`` is where to point boto3."""

    def __init__(self, target_url: str, plan: FaultPlan | None = None) -> None:
        host, port = target_url.removeprefix("http://").rsplit(":", 1)
        self.target = (host, int(port))
        self.plan = plan
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> S3FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            state: dict[str, Fault | None] = {"fault": None}
            threading.Thread(
                target=self._requests, args=(client, upstream, state), daemon=True
            ).start()
            threading.Thread(
                target=self._answers, args=(upstream, client, state), daemon=True
            ).start()

    def _requests(
        self, client: socket.socket, upstream: socket.socket, state: dict[str, Fault | None]
    ) -> None:
        try:
            while data := client.recv(65536):
                # boto3 sends one request at a time per connection: a chunk that
                # starts with a method starts the next request.
                if data.startswith(_METHODS) and self.plan is not None:
                    state["fault"] = self.plan.pick(data)
                    if state["fault"] == "reset":
                        upstream.sendall(data[: len(data) // 2])
                        _reset(upstream)
                        _reset(client)
                        return
                if state["fault"] == "flip":
                    data, flipped = _flipped(data)
                    if flipped:
                        state["fault"] = None
                upstream.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _answers(
        self, upstream: socket.socket, client: socket.socket, state: dict[str, Fault | None]
    ) -> None:
        head = b""  # the answer's header so far, while a cut waits for its body
        try:
            while data := upstream.recv(65536):
                fault = state["fault"]
                if fault == "lose" and not data.startswith(b"HTTP/1.1 100"):
                    _reset(client)
                    _reset(upstream)
                    return
                if fault == "cut":
                    # The whole header, then half the body: a truncated answer, not a
                    # garbled one (cut headers can still read as a 200 without body).
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0 or end + 4 == len(head):
                        continue
                    body = head[end + 4 :]
                    client.sendall(head[: end + 4] + body[: len(body) // 2])
                    client.shutdown(socket.SHUT_RDWR)
                    client.close()
                    _reset(upstream)
                    return
                client.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            if head:
                client.sendall(head)
            client.shutdown(socket.SHUT_WR)


def _flipped(data: bytes) -> tuple[bytes, bool]:
    """`data` with the middle byte of its body part inverted (a chunk that starts a
    request has its header first); whether a byte was changed."""
    start = data.find(b"\r\n\r\n") + 4 if data.startswith(_METHODS) else 0
    if start >= len(data) or (start == 3 and data.startswith(_METHODS)):
        return data, False
    middle = start + (len(data) - start) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :], True


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST, not a FIN: the peer sees "Connection reset by peer"."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)  # wakes the other pipe's recv on this socket
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def bucket_through(
    proxy: S3FaultProxy, bucket: S3Bucket, total_attempts: int | None = None
) -> S3Bucket:
    """`bucket` reached through `proxy`; `total_attempts` caps botocore's own retries
    (standard mode), so that a fault outlasts them without the test waiting long."""
    from prefect_aws import AwsCredentials, S3Bucket

    parameters: dict[str, Any] = {"endpoint_url": proxy.endpoint_url}
    if total_attempts is not None:
        parameters["config"] = {
            "retries": {"mode": "standard", "total_max_attempts": total_attempts}
        }
    source = bucket.credentials
    credentials = AwsCredentials(
        aws_access_key_id=source.aws_access_key_id,
        aws_secret_access_key=source.aws_secret_access_key,
        region_name=source.region_name,
        aws_client_parameters=parameters,
    )
    return S3Bucket(
        bucket_name=bucket.bucket_name, credentials=credentials, bucket_folder=bucket.bucket_folder
    )
