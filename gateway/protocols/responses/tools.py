"""The client's tools as hub functions: a namespace's tools flattened to `<namespace>__<name>` (a short hash
when longer than 64 characters), a freeform custom tool as a function of one string argument `input`,
`tool_choice` in the hub's terms, and the names to turn the calls back into the client's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from gateway.protocols.responses.tables import CUSTOM_PARAMETERS, MAX_TOOL_NAME, NAMESPACE_JOIN, TOOL_CHOICES
from gateway.protocols.responses_store import input_items


@dataclass(slots=True)
class ToolNames:
    """The client's tools by their hub (flat) names: flat name -> (namespace, name, custom)."""

    tools: dict[str, tuple[str | None, str, bool]] = field(default_factory=dict)

    def add(self, namespace: str | None, tool_name: str, custom: bool) -> str:
        flat = flat_name(namespace, tool_name)
        self.tools[flat] = (namespace, tool_name, custom)
        return flat

    def resolve(self, namespace: Any, tool_name: Any) -> str:
        """The flat name of a call the client sent back; one without its namespace is found by its name when
        that is unambiguous."""
        tool_name = str(tool_name or "")
        if isinstance(namespace, str) and namespace:
            return flat_name(namespace, tool_name)
        if tool_name in self.tools:
            return tool_name
        found = [flat for flat, (_, inner, _) in self.tools.items() if inner == tool_name]
        return found[0] if len(found) == 1 else tool_name

    def original(self, flat: str) -> tuple[str | None, str, bool]:
        return self.tools.get(flat, (None, flat, False))


def flat_name(namespace: str | None, tool_name: str) -> str:
    if not namespace:
        return tool_name
    flat = f"{namespace}{NAMESPACE_JOIN}{tool_name}"
    if len(flat) <= MAX_TOOL_NAME:
        return flat
    digest = hashlib.sha256(flat.encode()).hexdigest()[:12]
    return f"{flat[: MAX_TOOL_NAME - 13]}_{digest}"


def _tools(body: dict[str, Any]) -> tuple[ToolNames, list[dict[str, Any]]]:
    """The client's tools (top-level, and those of `additional_tools` input items) as hub functions."""
    names, hub = ToolNames(), []
    declared = list(body.get("tools") or ())
    for item in input_items(body):
        if item.get("type") == "additional_tools" and isinstance(item.get("tools"), list):
            declared.extend(item["tools"])
    for tool in declared:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "namespace":
            for inner in tool.get("tools") or ():
                if isinstance(inner, dict):
                    hub.extend(_hub_tool(names, inner, str(tool.get("name") or "")))
        else:
            hub.extend(_hub_tool(names, tool, None))
    return names, hub


def _hub_tool(names: ToolNames, tool: dict[str, Any], namespace: str | None) -> list[dict[str, Any]]:
    kind, tool_name = tool.get("type"), tool.get("name")
    if kind not in ("function", "custom") or not isinstance(tool_name, str) or not tool_name:
        return []  # hosted tools (web_search, file_search, ...) have no hub form
    if flat_name(namespace, tool_name) in names.tools:
        return []  # declared twice (top-level and in an additional_tools item): upstreams refuse duplicates
    description = tool.get("description") if isinstance(tool.get("description"), str) else ""
    if kind == "custom":
        function = {
            "name": names.add(namespace, tool_name, True),
            "description": _custom_description(description, tool.get("format")),
            "parameters": CUSTOM_PARAMETERS,
        }
    else:
        parameters = tool.get("parameters")
        function = {
            "name": names.add(namespace, tool_name, False),
            "description": description,
            "parameters": parameters
            if isinstance(parameters, dict)
            else {"type": "object", "properties": {}},
        }
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
    return [{"type": "function", "function": function}]


def _custom_description(description: str, form: Any) -> str:
    """A freeform tool's grammar, told to the model in words, since a hub function has no grammar."""
    if isinstance(form, dict) and form.get("type") == "grammar" and isinstance(form.get("definition"), str):
        syntax = form.get("syntax") or "grammar"
        return f"{description}\n\nThe `input` must match this {syntax} grammar:\n{form['definition']}".strip()
    return description


def _tool_choice(choice: Any, names: ToolNames) -> Any:
    if isinstance(choice, str):
        return TOOL_CHOICES.get(choice, "auto")
    if not isinstance(choice, dict):
        return None
    if choice.get("type") in ("function", "custom") and isinstance(choice.get("name"), str):
        flat = names.resolve(choice.get("namespace"), choice["name"])
        return {"type": "function", "function": {"name": flat}}
    if choice.get("type") == "allowed_tools":
        return "required" if choice.get("mode") == "required" else "auto"
    return "auto"  # a hosted tool's choice
