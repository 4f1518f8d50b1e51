"""Gemini's wire values and the hub's, as tables: the endpoints and the kinds of call they are, Google's
status names and error details, generation and thinking settings, tool modes and finish reasons, in both
directions side by side, so that a mapping and its inverse are read together."""

from __future__ import annotations

name = "gemini"
KINDS = {
    "generateContent": "chat",
    "streamGenerateContent": "chat",
    "countTokens": "count",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
}
# google.rpc.Code names by the HTTP status the gateway chose (https://cloud.google.com/apis/design/errors)
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GOOGLE_STATUSES = frozenset(STATUS_NAMES.values()) | {
    "OUT_OF_RANGE",
    "ALREADY_EXISTS",
    "DATA_LOSS",
    "UNKNOWN",
}
# OpenAI-flavoured error types for upstream errors, by status
ERROR_TYPES = {401: "authentication_error", 403: "permission_denied", 404: "invalid_request_error"}
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
# ErrorInfo reasons that say the key itself is no good: it is set aside
KEY_REASONS = frozenset(
    ("API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "CONSUMER_SUSPENDED", "SERVICE_DISABLED")
)

# generationConfig fields that map one to one onto hub fields
GENERATION_FIELDS = {
    "maxOutputTokens": "max_tokens",
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "stopSequences": "stop",
    "seed": "seed",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
}
THINKING_LEVELS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
# reasoning effort for a Gemini 3 model (thinkingLevel), else as a budget that every 2.5 model takes
EFFORT_LEVELS = {"none": "MINIMAL", "minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH",
                 "xhigh": "HIGH", "max": "HIGH"}  # fmt: skip
EFFORT_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576,
                  "max": 24576}  # fmt: skip
MAX_THINKING_BUDGET = 24576  # the largest budget Gemini 2.5 Flash takes (Pro takes 32768)
MAX_THINKING_BUDGET_PRO = 32768
TOOL_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto"}
TOOL_CHOICES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
FINISH_TO_HUB = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
}
FINISH_FROM_HUB = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
# Google's documented value for a function call whose signature is unknown (a call made by another model)
SKIP_SIGNATURE = "skip_thought_signature_validator"
