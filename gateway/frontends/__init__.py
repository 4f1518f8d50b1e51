"""Inbound API families: each module speaks one client protocol."""
