"""The Django Channels tutorial chat app, ported by changing imports only.

``chat/consumers.py`` (sync and async variants) and ``chat/routing.py`` / ``asgi.py`` as the
Channels tutorial writes them (parts 2 and 3). Changed lines: the imports of ``WebsocketConsumer``
/ ``AsyncWebsocketConsumer``, ``re_path``, ``ProtocolTypeRouter``/``URLRouter`` and
``AllowedHostsOriginValidator`` (which takes its allowed hosts as an argument, as there are no
Django settings). ``AuthMiddlewareStack`` and the Django HTTP app are Django features and are left
out. The lead's over-the-wire test serves :data:`application` from the daemon.
"""

import json

from asgiref.sync import async_to_sync

from gateway.consumers import AsyncWebsocketConsumer, WebsocketConsumer  # was channels.generic.websocket
from gateway.middleware import AllowedHostsOriginValidator  # was channels.security.websocket
from gateway.routing import ProtocolTypeRouter, URLRouter, re_path  # was channels.routing / django.urls


class ChatConsumer(WebsocketConsumer):
    def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"

        # Join room group
        async_to_sync(self.channel_layer.group_add)(
            self.room_group_name, self.channel_name
        )

        self.accept()

    def disconnect(self, close_code):
        # Leave room group
        async_to_sync(self.channel_layer.group_discard)(
            self.room_group_name, self.channel_name
        )

    # Receive message from WebSocket
    def receive(self, text_data):
        text_data_json = json.loads(text_data)
        message = text_data_json["message"]

        # Send message to room group
        async_to_sync(self.channel_layer.group_send)(
            self.room_group_name, {"type": "chat.message", "message": message}
        )

    # Receive message from room group
    def chat_message(self, event):
        message = event["message"]

        # Send message to WebSocket
        self.send(text_data=json.dumps({"message": message}))


class AsyncChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"

        # Join room group
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)

        await self.accept()

    async def disconnect(self, close_code):
        # Leave room group
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    # Receive message from WebSocket
    async def receive(self, text_data):
        text_data_json = json.loads(text_data)
        message = text_data_json["message"]

        # Send message to room group
        await self.channel_layer.group_send(
            self.room_group_name, {"type": "chat.message", "message": message}
        )

    # Receive message from room group
    async def chat_message(self, event):
        message = event["message"]

        # Send message to WebSocket
        await self.send(text_data=json.dumps({"message": message}))


websocket_urlpatterns = [
    re_path(r"ws/chat/(?P<room_name>\w+)/$", ChatConsumer.as_asgi()),
    re_path(r"ws/achat/(?P<room_name>\w+)/$", AsyncChatConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
