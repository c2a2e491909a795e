"""The bundled example application that ``make run`` serves (``gateway.demo:application``)."""

from gateway.demo.app import application

__all__ = ["application"]
