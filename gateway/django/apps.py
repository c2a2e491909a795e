"""The Django app ``gateway.django`` (put it in ``INSTALLED_APPS``)."""

from __future__ import annotations

from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """Registers the system checks, ``manage.py rungateway``, and ``CHANNEL_LAYERS``.

    At start-up the process-wide channel layers follow ``CHANNEL_LAYERS`` unless the daemon
    already configured them (the daemon merges ``CHANNEL_LAYERS`` into its YAML ``layers:``
    itself); ``override_settings(CHANNEL_LAYERS=...)`` is followed in tests.
    """

    name = "gateway.django"
    label = "gateway"
    verbose_name = "Gateway"

    def ready(self) -> None:
        from gateway.django import checks, layers
        from gateway.layers.registry import channel_layers

        checks.register()
        layers.connect_setting_changed()
        if not channel_layers.configured:
            layers.apply_setting()
