"""The exported metrics: name, type, help text and labels (``docs/operations.md`` lists them).

Stats objects (:mod:`gateway.metrics.stats`) name a family by its key; the collector turns the
samples into ``prometheus_client`` metric families at scrape time. Counter names are given here
without ``_total``: ``prometheus_client`` appends it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "Family"]


@dataclass(frozen=True)
class Family:
    """One metric family."""

    name: str
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...]

    @property
    def exposed_name(self) -> str:
        """The name as it appears in the exposition (counters end in ``_total``)."""
        return self.name + "_total" if self.kind == "counter" else self.name


_L = ("listener", "protocol")

FAMILIES: dict[str, Family] = {
    # -- worker processes (workers above 1; the supervisor's admin listeners) -----------------
    "workers": Family("gateway_workers", "gauge", "Worker processes configured.", ()),
    "worker_up": Family("gateway_worker_up", "gauge", "1 while the worker serves and reports itself ready.", ("worker",)),
    "worker_restarts": Family("gateway_worker_restarts", "counter",
                              "Times the worker was restarted after it died or stopped answering.", ("worker",)),
    "worker_connections_open": Family("gateway_worker_connections_open", "gauge",
                                      "Open connections of the worker (all its listeners).", ("worker",)),
    # -- listeners ---------------------------------------------------------------------------
    "listener_up": Family("gateway_listener_up", "gauge", "1 while the listener is bound and accepting.", _L),
    "connections_open": Family("gateway_connections_open", "gauge", "Open connections.", _L),
    "connections_total": Family("gateway_connections", "counter", "Connections accepted (WebSocket: upgrades).", _L),
    "events_in": Family("gateway_events_received", "counter", "Events received from clients, by ASGI event type.",
                        (*_L, "type")),
    "events_out": Family("gateway_events_sent", "counter", "Events sent to clients, by ASGI event type.", (*_L, "type")),
    "app_errors": Family("gateway_application_exceptions", "counter", "Application instances that raised.", _L),
    "app_client_left": Family("gateway_application_client_left", "counter",
                              "Application instances that ended on send() after their client left (not an error).", _L),
    "app_timeouts": Family("gateway_application_timeouts", "counter",
                           "Application instances that did not answer in time or were cancelled after their client left.", _L),
    "pauses": Family("gateway_backpressure_pauses", "counter",
                     "Flow-control pauses: read (a client paused because the application is behind), "
                     "write (send() waited for a slow client).", (*_L, "direction")),
    "request_latency": Family("gateway_request_duration_seconds", "histogram",
                              "Time from a request (HTTP request head, SMTP message) to its complete answer.", _L),
    "handshake_latency": Family("gateway_handshake_duration_seconds", "histogram",
                                "Time from a WebSocket upgrade request or an MQTT CONNECT to its acceptance.", _L),
    # -- protocols ---------------------------------------------------------------------------
    "http_requests": Family("gateway_http_requests", "counter", "HTTP requests by HTTP version (1.x, 2).",
                            ("listener", "http_version")),
    "http2_goaways": Family("gateway_http2_connections_cut_off", "counter",
                            "HTTP/2 connections closed for breaking the protocol or a limit (GOAWAY with an error).",
                            ("listener",)),
    "mqtt_dropped": Family("gateway_mqtt_slow_client_dropped", "counter",
                           "QoS 0 messages dropped for clients that do not read (limits.max_write_buffer).", ("listener",)),
    "smtp_messages": Family("gateway_smtp_messages", "counter",
                            "SMTP messages by outcome: accepted (250), rejected (5xx), tempfailed (4xx, retried by the sender).",
                            ("listener", "result")),
    "smtp_recipients_rejected": Family("gateway_smtp_recipients_rejected", "counter",
                                       "RCPT TO refused because no route matches.", ("listener",)),
    "imap_messages": Family("gateway_imap_messages", "counter",
                            "IMAP messages by outcome: taken (accepted and acted on), rejected, retried (left for later).",
                            ("listener", "result")),
    "imap_sessions": Family("gateway_imap_sessions", "counter", "Successful IMAP logins.", ("listener",)),
    "sms_webhooks": Family("gateway_sms_webhooks", "counter",
                           "SMS webhooks by provider and outcome (handled, failed, rejected, duplicate, unrouted, ignored).",
                           ("listener", "provider", "outcome")),
    "sms_statuses": Family("gateway_sms_delivery_reports", "counter",
                           "Delivery reports handed to the application, by provider and status.",
                           ("listener", "provider", "status")),
    "sms_sent": Family("gateway_sms_sent", "counter", "Outbound SMS by provider and result (ok, failed).",
                       ("listener", "provider", "result")),
    "connector_up": Family("gateway_mqtt_connector_up", "gauge",
                           "1 while an MQTT connector is connected to its broker (CONNACK accepted).", ("listener",)),
    "connector_reconnects": Family("gateway_mqtt_connector_reconnects", "counter",
                                   "Broker connections of an MQTT connector lost or refused, then tried again.",
                                   ("listener",)),
    "connector_connect_failures": Family("gateway_mqtt_connector_connect_failures", "counter",
                                         "Connection attempts that did not reach an accepting CONNACK.", ("listener",)),
    "connector_queued": Family("gateway_mqtt_connector_queued_messages", "gauge",
                               "Outgoing QoS 1/2 messages of an MQTT connector not yet completed by the broker.",
                               ("listener",)),
    "connector_dropped": Family("gateway_mqtt_connector_dropped", "counter",
                                "Outgoing messages an MQTT connector dropped: QoS 0 while disconnected, or larger "
                                "than the broker's Maximum Packet Size.", ("listener",)),
    # -- MQTT brokers ------------------------------------------------------------------------
    "mqtt_sessions": Family("gateway_mqtt_sessions", "gauge", "Broker sessions (online: a client is connected).",
                            ("broker", "state")),
    "mqtt_subscriptions": Family("gateway_mqtt_subscriptions", "gauge", "Subscriptions held by broker sessions.", ("broker",)),
    "mqtt_retained": Family("gateway_mqtt_retained_messages", "gauge", "Retained messages (memory store).", ("broker",)),
    "mqtt_queue_dropped": Family("gateway_mqtt_queue_dropped", "counter",
                                 "QoS 1/2 messages dropped for absent clients beyond max_queued_messages.", ("broker",)),
    # -- channel layers ----------------------------------------------------------------------
    "layer_ops": Family("gateway_layer_operations", "counter", "Channel layer operations.", ("layer", "operation")),
    "layer_errors": Family("gateway_layer_errors", "counter", "Channel layer failures.", ("layer", "kind")),
    "layer_dropped": Family("gateway_layer_messages_dropped", "counter",
                            "Messages refused or dropped by a channel layer (capacity, expired).", ("layer", "reason")),
    "layer_channels": Family("gateway_layer_channels", "gauge", "Channels with state in this process.", ("layer",)),
    "layer_groups": Family("gateway_layer_groups", "gauge", "Groups known to this process.", ("layer",)),
    "layer_queued": Family("gateway_layer_queued_messages", "gauge", "Messages waiting in this process's queues.", ("layer",)),
    "layer_connections": Family("gateway_layer_connections", "gauge", "Connections of a networked layer, by state.",
                                ("layer", "state")),
    # -- the daemon --------------------------------------------------------------------------
    "info": Family("gateway_info", "gauge", "The gateway's version.", ("version",)),
    "ready": Family("gateway_ready", "gauge", "1 once every listener is bound and start-up finished.", ()),
}
