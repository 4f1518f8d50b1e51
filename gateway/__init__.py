"""Relayhouse gateway: the relay, its domain and the machinery between them."""

__version__ = "0.1.0"
