"""Drive MQTT connections (MqttProtocol over StringTransport) with a fake clock and a real loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from gateway.protocols.mqtt import Connect, Packet, ServerOptions, decode, encode
from gateway.protocols.mqtt.adapter import MqttSettings
from gateway.protocols.mqtt.broker import Authenticator, Broker
from gateway.protocols.mqtt.adapter import MqttProtocol
from tests.unit.loop_harness import LoopHarness


class Client:
    """One client connection: ``send(packets)``, ``received()`` decodes what the server wrote."""

    def __init__(self, harness: Harness, level: int, port: int) -> None:
        self.harness = harness
        self.level = level
        self.protocol = MqttProtocol(harness.settings)
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 1883), peerAddress=IPv4Address("TCP", "192.0.2.1", port)
        )
        self.protocol.makeConnection(self.transport)
        self._pending = b""

    def send(self, *packets: Packet | bytes) -> None:
        data = b"".join(p if isinstance(p, bytes) else encode(p, self.level) for p in packets)
        self.protocol.dataReceived(data)
        self.harness.run()

    def connect(self, client_id: str = "c", **fields: Any) -> list[Packet]:
        self.send(Connect(client_id, self.level, **fields))
        return self.received()

    def received(self) -> list[Packet]:
        data = memoryview(self._pending + self.transport.value())
        self.transport.clear()
        packets = []
        while data:
            packet, used = decode(data, protocol_level=self.level)
            if packet is None:
                break
            packets.append(packet)
            data = data[used:]
        self._pending = bytes(data)
        return packets

    def wait_received(self, timeout: float = 10.0) -> list[Packet]:
        """Like :meth:`received`, waiting (real time) for the server to write something."""
        deadline = time.monotonic() + timeout
        while not self.transport.value() and time.monotonic() < deadline:
            self.harness.loop.run_until_complete(asyncio.sleep(0.005))
        return self.received()

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        """The network connection drops (the transport lets go of its producer first, as
        Twisted's does)."""
        self.transport.unregisterProducer()
        self.protocol.connectionLost(None)
        self.harness.run()


class Harness(LoopHarness):
    """Settings shared by connections, a fake clock, a loop, and the log."""

    def __init__(self, *, consumer: str = "broker", app: Any = None, options: ServerOptions | None = None,
                 auth: Authenticator | None = None, **settings: Any) -> None:
        super().__init__()
        self.broker = Broker(self.clock, self.loop)
        self.settings = MqttSettings(
            loop=self.loop, reactor=self.clock, options=options or ServerOptions(), consumer=consumer,
            app=app, broker=self.broker, auth=auth or Authenticator(), **settings,
        )
        self._ports = 40000

    def client(self, level: int = 5) -> Client:
        self._ports += 1
        return Client(self, level, self._ports)


