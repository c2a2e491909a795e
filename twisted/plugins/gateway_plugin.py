"""twistd plugin for the gateway daemon: ``twistd -n gateway -c conf/gateway.yaml``.

Only a pointer to the tap module, in Twisted's own plugin style: nothing is imported here,
so other twistd plugins and ``getPlugins`` stay cheap and unaffected.
"""

from twisted.application.service import ServiceMaker

gateway = ServiceMaker(
    "gateway",
    "gateway.tap",
    "Multi-protocol ASGI gateway (HTTP, WebSocket, MQTT, SMTP, IMAP, SMS)",
    "gateway",
)
