"""The ASGI side of the gateway: loading applications, running app instances, lifespan."""
