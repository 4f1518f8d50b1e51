"""The Responses protocol's names and tables: its endpoints and their call kinds, how its fields map to the
hub's, and the fixed texts of compaction.
"""

from __future__ import annotations

name = "responses"
PATHS = {
    "responses": "/responses",
    "compact": "/responses/compact",
    "input_tokens": "/responses/input_tokens",
}
KINDS = {"responses": "chat", "compact": "chat", "input_tokens": "count"}

# -- conversion tables -------------------------------------------------------------------------------
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = {
    "input_text": "text",
    "output_text": "text",
    "text": "text",
    "refusal": "refusal",
    "summary_text": "text",
    "reasoning_text": "text",
}
EFFORTS = {
    "none": None,
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}
PASSED = ("temperature", "top_p")  # same name, same meaning in the hub
TOOL_CHOICES = {"auto": "auto", "none": "none", "required": "required"}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
TERMINAL_EVENTS = (b"response.completed", b"response.incomplete", b"response.failed")
ENCRYPTED_INCLUDE = "reasoning.encrypted_content"
MAX_TOOL_NAME = 64
NAMESPACE_JOIN = "__"
CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as free text."}},
    "required": ["input"],
}

SUMMARY_INTRO = "Summary of the earlier conversation, which was compacted:\n\n"
COMPACT_PROMPT = (
    "You compact a conversation between a user and an assistant so that it can go on in a smaller context. "
    "Write a summary that keeps everything needed to continue the work: the user's goals and constraints, "
    "the decisions made, the facts learned, the tools called and their important results, the files, "
    "names and identifiers involved, and what remains to be done. Write only the summary."
)
