"""Consumers: the classes applications are written as (Channels-compatible names).

See ``docs/consumers.md`` for the dispatch rules and the sync thread model.
"""

from __future__ import annotations

from gateway.consumers.base import AsyncConsumer, SyncConsumer, await_many_dispatch, get_handler_name
from gateway.consumers.email import AsyncEmailConsumer, EmailConsumer
from gateway.consumers.http import AsyncHttpConsumer
from gateway.consumers.mqtt import AsyncMqttConsumer, MqttConsumer
from gateway.consumers.sms import AsyncSmsConsumer, SmsConsumer
from gateway.consumers.threads import SerialExecutor, configure_sync_threads, get_sync_executor, sync_threads
from gateway.consumers.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    JsonWebsocketConsumer,
    WebsocketConsumer,
)
from gateway.exceptions import AcceptConnection, DenyConnection, StopConsumer

__all__ = [
    "AcceptConnection",
    "AsyncConsumer",
    "AsyncEmailConsumer",
    "AsyncHttpConsumer",
    "AsyncJsonWebsocketConsumer",
    "AsyncMqttConsumer",
    "AsyncSmsConsumer",
    "AsyncWebsocketConsumer",
    "DenyConnection",
    "EmailConsumer",
    "JsonWebsocketConsumer",
    "MqttConsumer",
    "SerialExecutor",
    "SmsConsumer",
    "StopConsumer",
    "SyncConsumer",
    "WebsocketConsumer",
    "await_many_dispatch",
    "configure_sync_threads",
    "get_handler_name",
    "get_sync_executor",
    "sync_threads",
]
