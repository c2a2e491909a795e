"""Test tools for applications: communicators that drive a consumer without a server.

Channels-compatible names: ``ApplicationCommunicator``, ``HttpCommunicator``,
``WebsocketCommunicator``. Protocol issues add theirs on :class:`ProtocolCommunicator`.
"""

from __future__ import annotations

from gateway.testing.application import ApplicationCommunicator, ProtocolCommunicator, UnexpectedMessage
from gateway.testing.email import EmailCommunicator, EmailOutcome
from gateway.testing.http import HttpCommunicator
from gateway.testing.mqtt import MqttCommunicator
from gateway.testing.sms import SmsCommunicator, SmsOutcome
from gateway.testing.websocket import WebsocketCommunicator

__all__ = [
    "ApplicationCommunicator",
    "EmailCommunicator",
    "EmailOutcome",
    "HttpCommunicator",
    "MqttCommunicator",
    "ProtocolCommunicator",
    "SmsCommunicator",
    "SmsOutcome",
    "UnexpectedMessage",
    "WebsocketCommunicator",
]
