"""anthropic protocol module: being written."""

name = "anthropic"
