"""A minimal sequential client for instruction counting (bench/instructions.sh).

usage: rawclient.py PORT N get|post|conn|hs|echo|smtp|sms
  get:  one keep-alive connection, N requests ``GET /`` (each answered before the next)
  post: one keep-alive connection, N requests ``POST /`` with a 64-byte body
  conn: N times: connect, ``GET /`` with ``Connection: close``, read until the server closes
        (connection set-up and tear-down: reactor registration, per-connection timers)
  hs:   N times: connect, WebSocket handshake, send a close frame (1000), read until the server closes
  echo: one connection, N WebSocket round trips of a 32-byte text message
  smtp: one SMTP session (smtplib), N messages of about 2 KB, each answered before the next
  sms:  one keep-alive connection, N signed generic-provider SMS webhooks (bench/conf/mail.yaml),
        each with its own message id, each answered before the next
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import smtplib
import socket
import sys
import time
from collections.abc import Callable

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
MASK = (1, 2, 3, 4)


def masked(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, 0x80 | len(payload), *MASK)) + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, KEY))
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    return sock


def http(port: int, n: int, request: bytes | Callable[[], bytes], per_connection: bool = False) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(n):
        if per_connection and i:
            sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request if isinstance(request, bytes) else request())
        got = b""
        while True:
            got += sock.recv(65536)
            head, sep, body = got.partition(b"\r\n\r\n")
            if not sep:
                continue
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(body) >= length:
                break
        if per_connection:
            while sock.recv(65536):  # the server closes
                pass
            sock.close()
    sock.close()


MAIL = "From: bench@example.com\r\nTo: sink@example.com\r\nSubject: bench\r\n\r\n" + ("x" * 76 + "\r\n") * 26
_ids = itertools.count()


def smtp(port: int, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo("bench.local")
        for _ in range(n):
            client.sendmail("bench@example.com", ["sink@example.com"], MAIL)


def sms_request(port: int) -> bytes:
    body = json.dumps({"type": "message", "id": f"bench-{time.time_ns()}-{next(_ids)}", "from": "+447400123456",
                       "to": "+441134960000", "text": "hello"}).encode()
    stamp = str(int(time.time()))
    signature = "v1=" + hmac.new(b"bench-secret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return (b"POST /sms HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"X-SMS-Timestamp: %s\r\nX-SMS-Signature: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (port, stamp.encode(), signature.encode(), len(body), body))


def main() -> None:
    port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if mode == "smtp":
        smtp(port, n)
        return
    if mode == "sms":
        http(port, n, lambda: sms_request(port))
        return
    if mode == "get":
        http(port, n, b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: rawclient\r\nAccept: */*\r\n\r\n" % port)
        return
    if mode == "conn":
        http(port, n, b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % port, per_connection=True)
        return
    if mode == "post":
        http(port, n, b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/octet-stream\r\n"
                      b"Content-Length: 64\r\n\r\n%s" % (port, b"x" * 64))
        return
    close = masked(8, (1000).to_bytes(2, "big"))
    if mode == "hs":
        for _ in range(n):
            sock = handshake(port)
            sock.sendall(close)
            while sock.recv(4096):
                pass
            sock.close()
        return
    sock = handshake(port)
    message = masked(1, b"x" * 32)
    for _ in range(n):
        sock.sendall(message)
        got = b""
        while len(got) < 34:
            got += sock.recv(4096)
    sock.sendall(close)
    sock.close()


if __name__ == "__main__":
    main()
