"""The integrations page: step-by-step setup of coding tools (Claude Code, Codex CLI, Gemini CLI, Cursor,
Cline), chat front ends (ChatGPT Next Web, LobeChat), frameworks (LangChain, Dify) and the OpenAI
environment variables, each with this gateway's address filled in: the base URL with `/v1` where the tool
takes OpenAI's form, the root without it where it appends the path itself (Anthropic's and Google's SDKs,
ChatGPT Next Web). The coding tools' setups are the ones README.md lists as tested."""

from __future__ import annotations

from flask import Blueprint, render_template

from console.web.home import base_url

bp = Blueprint("integrations", __name__)

TOOLS = (  # (anchor, name): the page's sections, in order
    ("claude-code", "Claude Code"),
    ("codex", "Codex CLI"),
    ("gemini-cli", "Gemini CLI"),
    ("cursor", "Cursor"),
    ("cline", "Cline"),
    ("nextchat", "ChatGPT Next Web"),
    ("lobechat", "LobeChat"),
    ("langchain", "LangChain"),
    ("dify", "Dify"),
    ("env", "OPENAI_BASE_URL / OPENAI_API_BASE"),
)


@bp.get("/integrations")
def integrations() -> str:
    base = base_url()
    return render_template("integrations.html", tools=TOOLS, base_url=base, root=base.removesuffix("/v1"))
