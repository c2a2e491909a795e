# -*- test-case-name: tests.unit.mqtt.test_broker -*-
"""The built-in MQTT broker.

* :class:`Broker` (:mod:`.core`) - sessions, subscriptions, routing, retained messages, wills;
* :class:`BrokerLink` (:mod:`.link`) - one connection's handle on it (what applications use);
* :class:`BrokerApplication` / :data:`application` (:mod:`.app`) - the broker as an ASGI app;
* :class:`Authenticator`, :class:`AccessRule`, :func:`hash_password` (:mod:`.auth`);
* :class:`MemoryStore` (:mod:`.store`), :class:`~.redis_store.RedisStore` - where state lives;
* :class:`Cluster` (:mod:`.cluster`) - several processes as one broker over a channel layer.
"""

from __future__ import annotations

from gateway.protocols.mqtt.broker.app import BrokerApplication, application
from gateway.protocols.mqtt.broker.auth import AccessRule, Authenticator, hash_password, verify_password
from gateway.protocols.mqtt.broker.cluster import Cluster
from gateway.protocols.mqtt.broker.core import Broker
from gateway.protocols.mqtt.broker.link import BrokerLink
from gateway.protocols.mqtt.broker.session import Message
from gateway.protocols.mqtt.broker.store import BrokerStore, MemoryStore

__all__ = [
    "AccessRule",
    "Authenticator",
    "Broker",
    "BrokerApplication",
    "BrokerLink",
    "BrokerStore",
    "Cluster",
    "MemoryStore",
    "Message",
    "application",
    "hash_password",
    "verify_password",
]
