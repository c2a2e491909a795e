"""Helpers to drive an MqttServerConnection the way a client and an adapter would."""

from __future__ import annotations

from typing import Any

from gateway.protocols.mqtt import (
    ConnAck,
    Connect,
    ConnectReceived,
    Event,
    MqttServerConnection,
    Packet,
    Properties,
    ServerOptions,
    decode,
    encode,
)


class Harness:
    """A server connection plus a fake client speaking ``level``."""

    def __init__(self, level: int = 5, options: ServerOptions | None = None) -> None:
        self.level = level
        self.conn = MqttServerConnection(options)
        self.now = 0.0
        self.conn.next_deadline(self.now)

    def send(self, *packets: Packet) -> list[Event]:
        """The client sends ``packets`` (in one segment); return the events."""
        self.conn.receive_data(b"".join(encode(packet, self.level) for packet in packets))
        self.conn.next_deadline(self.now)  # the adapter's flush point stamps the time
        return self.conn.events_received()

    def received(self) -> list[Packet]:
        """Decode what the server wrote since the last call, as the client would."""
        data = memoryview(self.conn.data_to_send())
        packets = []
        while data:
            packet, used = decode(data, protocol_level=self.level)
            if packet is None:
                raise AssertionError(f"incomplete output {bytes(data)!r}")
            packets.append(packet)
            data = data[used:]
        return packets

    def connect(self, accept: bool = True, **fields: Any) -> ConnAck | None:
        """Send a CONNECT (client id "c" unless given) and accept it; return the CONNACK."""
        fields.setdefault("client_id", "c")
        events = self.send(Connect(protocol_level=self.level, **fields))
        assert [type(event) for event in events] == [ConnectReceived]
        if not accept:
            return None
        self.conn.accept()
        self.conn.next_deadline(self.now)
        (connack,) = self.received()
        assert isinstance(connack, ConnAck)
        return connack

    def advance(self, seconds: float) -> None:
        """Let time pass and fire the timer if it is due, as the adapter's callLater would."""
        self.now += seconds
        deadline = self.conn.next_deadline(self.now)
        if deadline is not None and deadline <= self.now:
            self.conn.handle_timeout(self.now)


def props(**values: Any) -> Properties:
    """Shorthand for Properties(...)."""
    return Properties(**values)
