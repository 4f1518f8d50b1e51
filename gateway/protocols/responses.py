"""responses protocol module: being written."""

name = "responses"
