"""A minimal sequential WebSocket client for instruction counting (bench/ws_instructions.sh).

usage: ws_rawclient.py PORT N hs|echo|http|http-conn
  hs:   N times: connect, handshake, send a close frame (1000), read until the server closes
  echo: one connection, N round trips of a 32-byte text message
  http: one keep-alive connection, N GET requests (the hello app's 13-byte response)
  http-conn: N times: connect, one GET with "Connection: close", read until the server closes
"""

from __future__ import annotations

import socket
import sys

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


def http_get(sock: socket.socket, request: bytes) -> None:
    """Send one request, read the whole response (Content-Length framed)."""
    sock.sendall(request)
    got = b""
    while b"\r\n\r\n" not in got:
        got += sock.recv(4096)
    head, _, body = got.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(4096)


def main() -> None:
    port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if mode == "http":
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
        for _ in range(n):
            http_get(sock, request)
        sock.close()
        return
    if mode == "http-conn":
        request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % port
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port))
            http_get(sock, request)
            while sock.recv(4096):
                pass
            sock.close()
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
