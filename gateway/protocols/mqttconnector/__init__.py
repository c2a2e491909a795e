"""The MQTT connector (``protocol: mqtt-connector``): the gateway as a client of an existing
broker (Mosquitto, EMQX, HiveMQ, AWS IoT...), one ASGI ``mqtt`` scope per broker connection.

* :mod:`.core` - :class:`~.core.MqttClientConnection`, the client side of MQTT 3.1.1 / 5.0,
  sans-IO, on the codec and the flows of :mod:`gateway.protocols.mqtt`;
* :mod:`.asgi` - the connector's scope and the rules of what the application sends (the
  listener's :class:`~gateway.protocols.mqtt.asgi.ScopeState` and ``HandlingRules``);
* :mod:`.adapter` - the Twisted side: connecting, reconnecting, the application instance of each
  connection, the outbound queue;
* :mod:`.websocket` - the connection over WebSocket (``ws://``, ``wss://``);
* :mod:`.listener`, :mod:`.config` - configuration → listener.
"""
