"""gemini protocol module: being written."""

name = "gemini"
