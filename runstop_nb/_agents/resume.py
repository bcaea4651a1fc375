"""Commands that continue an agent's session, and the message that talks to a running one.

:func:`resume_argv` rewrites the argv of a non-interactive run into the same CLI's resume
command: the original options are kept, the original prompt is replaced, and any resume
options of the original are dropped.

- Claude Code: ``claude [options] -p --resume ID PROMPT``. Its ``--allowedTools``-style
  options take several values, so the prompt goes last, after ``--resume ID``, which
  ends such a list. With ``--input-format stream-json`` the prompt cannot be an argument:
  it is left out and must be written to stdin with :func:`user_message_line`.
- Codex: ``codex [root options] exec [exec options] resume ID PROMPT``. The exec options
  stay before ``resume``: only some of them (``--json``, ``--model``…) are accepted after it.
- Gemini CLI: ``gemini --resume ID -p PROMPT [options]``.

Options are told from the prompt with each CLI's table of options that take a value; an
option missing from the table is taken for a flag, and ``--opt=value`` always works.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

_CLAUDE_VALUES = frozenset(
    {
        "--agent",
        "--agents",
        "--append-system-prompt",
        "--append-system-prompt-file",
        "--fallback-model",
        "--input-format",
        "--json-schema",
        "--max-budget-usd",
        "--max-turns",
        "--model",
        "--output-format",
        "--permission-mode",
        "--permission-prompt-tool",
        "--session-id",
        "--setting-sources",
        "--settings",
        "--system-prompt",
        "--system-prompt-file",
        "--max-thinking-tokens",
        "--resume",
        "-r",
    }
)
_CLAUDE_LISTS = frozenset(
    {
        "--add-dir",
        "--allowedTools",
        "--allowed-tools",
        "--disallowedTools",
        "--disallowed-tools",
        "--betas",
        "--mcp-config",
        "--plugin-dir",
        "--tools",
        "--file",
    }
)
_CLAUDE_COMMANDS = frozenset(
    {"mcp", "config", "update", "doctor", "install", "setup-token", "migrate-installer"}
)
_CLAUDE_DROP = frozenset({"--resume", "-r", "--continue", "-c", "--session-id", "--fork-session"})

_CODEX_VALUES = frozenset(
    {
        "-c",
        "--config",
        "--enable",
        "--disable",
        "-m",
        "--model",
        "--local-provider",
        "-p",
        "--profile",
        "-s",
        "--sandbox",
        "-C",
        "--cd",
        "--add-dir",
        "--output-schema",
        "--color",
        "-o",
        "--output-last-message",
        "-a",
        "--ask-for-approval",
    }
)
_CODEX_LISTS = frozenset({"-i", "--image"})

_GEMINI_VALUES = frozenset(
    {
        "-m",
        "--model",
        "-p",
        "--prompt",
        "-i",
        "--prompt-interactive",
        "--approval-mode",
        "-o",
        "--output-format",
        "--delete-session",
        "--sandbox-image",
        "-r",
        "--resume",
        "--telemetry-target",
        "--telemetry-otlp-endpoint",
        "--telemetry-outfile",
        "--proxy",
        "--session-summary",
    }
)
_GEMINI_LISTS = frozenset(
    {
        "--allowed-tools",
        "--allowed-mcp-server-names",
        "-e",
        "--extensions",
        "--include-directories",
        "--policy",
    }
)


def resume_argv(kind: str, argv: Sequence[str], session_id: str, prompt: str) -> list[str]:
    """Return the argv that resumes session ``session_id`` of ``argv``'s CLI with ``prompt``.

    Raises ValueError if ``argv`` is not recognisably a non-interactive run of ``kind``.
    """
    if not session_id:
        raise ValueError("no session id to resume; the agent's stream has not reported one yet")
    args = [str(a) for a in argv]
    if kind == "claude":
        return _claude(args, session_id, prompt)
    if kind == "codex":
        return _codex(args, session_id, prompt)
    if kind == "gemini":
        return _gemini(args, session_id, prompt)
    raise ValueError(f"cannot resume a {kind!r} run; only claude, codex and gemini runs resume")


def user_message_line(text: str, *, session_id: str = "default") -> bytes:
    """Return a user message for Claude's ``--input-format stream-json`` stdin, one JSON line.

    The shape is the one claude-agent-sdk-python's ``ClaudeSDKClient.query`` writes.
    """
    message = {
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": None,
        "session_id": session_id,
    }
    return (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8")


# -- per CLI --------------------------------------------------------------------


def _claude(args: list[str], session_id: str, prompt: str) -> list[str]:
    at = _program(args, "claude", ("claude-code/cli.js", "claude-code/cli.mjs"))
    tokens = _split(
        args[at + 1 :], _CLAUDE_VALUES, _CLAUDE_LISTS, optional={"--resume", "-r", "--debug", "-d"}
    )
    names = {_name(t[0]) for t in tokens if t[0].startswith("-")}
    if not names & {"-p", "--print"}:
        raise ValueError("not a non-interactive claude command: it has no -p/--print")
    if tokens and tokens[0][0] in _CLAUDE_COMMANDS:
        raise ValueError(f"not a claude run: {tokens[0][0]!r} is a subcommand")
    kept = [t for t in tokens if t[0].startswith("-") and _name(t[0]) not in _CLAUDE_DROP]
    options = [a for t in kept for a in t if _name(t[0]) not in ("-p", "--print")]
    streamed = any(_value(t) == "stream-json" for t in kept if _name(t[0]) == "--input-format")
    tail = [] if streamed else (["--", prompt] if prompt.startswith("-") else [prompt])
    return [*args[: at + 1], *options, "-p", "--resume", session_id, *tail]


def _codex(args: list[str], session_id: str, prompt: str) -> list[str]:
    at = _program(args, "codex", ("codex/bin/codex.js",))
    tokens = _split(args[at + 1 :], _CODEX_VALUES, _CODEX_LISTS)
    commands = [i for i, t in enumerate(tokens) if not t[0].startswith("-")]
    if not commands or tokens[commands[0]][0] not in ("exec", "e"):
        raise ValueError("not a non-interactive codex command: it has no 'exec' subcommand")
    verb = commands[0]
    root = [a for t in tokens[:verb] for a in t]
    rest = tokens[verb + 1 :]
    if rest and not rest[0][0].startswith("-") and rest[0][0] in ("review", "help"):
        raise ValueError(f"cannot resume a 'codex exec {rest[0][0]}' run")
    # positionals (the prompt; "resume", its id and prompt if argv resumed) go, so do --last/--all
    options = [a for t in rest if t[0].startswith("-") and t[0] not in ("--last", "--all") for a in t]
    tail = ["--", prompt] if prompt.startswith("-") else [prompt]
    return [*args[: at + 1], *root, tokens[verb][0], *options, "resume", session_id, *tail]


def _gemini(args: list[str], session_id: str, prompt: str) -> list[str]:
    at = _program(args, "gemini", ("gemini-cli/dist/index.js", "gemini-cli/bundle/gemini.js"))
    tokens = _split(args[at + 1 :], _GEMINI_VALUES, _GEMINI_LISTS, optional={"--resume", "-r"})
    names = {_name(t[0]) for t in tokens if t[0].startswith("-")}
    positional = [t for t in tokens if not t[0].startswith("-")]
    if names & {"-i", "--prompt-interactive"}:
        raise ValueError("not a non-interactive gemini command: it has -i/--prompt-interactive")
    if positional and positional[0][0] in ("mcp", "extensions", "skills", "hooks"):
        raise ValueError(f"not a gemini run: {positional[0][0]!r} is a subcommand")
    if not names & {"-p", "--prompt"} and not positional:
        raise ValueError("not a non-interactive gemini command: it has no -p/--prompt and no prompt")
    drop = {"-p", "--prompt", "-r", "--resume"}
    options = [a for t in tokens if t[0].startswith("-") and _name(t[0]) not in drop for a in t]
    ask = [f"--prompt={prompt}"] if prompt.startswith("-") else ["-p", prompt]
    return [*args[: at + 1], "--resume", session_id, *ask, *options]


# -- argv parsing ---------------------------------------------------------------


def _program(args: list[str], name: str, scripts: tuple[str, ...]) -> int:
    """Return the index of the CLI's program in ``args`` (after ``npx``, ``env``, ``node``…)."""
    for i, arg in enumerate(args[:8]):
        base = arg.replace("\\", "/").rsplit("/", 1)[-1]
        if base in (name, f"{name}.exe", f"{name}.cmd", f"{name}.js", f"{name}.mjs"):
            return i
        if any(arg.replace("\\", "/").endswith(script) for script in scripts):
            return i
    raise ValueError(f"not a {name} command: no {name!r} program in {' '.join(args[:4])!r}")


def _name(token: str) -> str:
    """Return the option name of ``--opt=value`` or ``--opt``."""
    return token.split("=", 1)[0] if token.startswith("--") else token


def _value(option: list[str]) -> str | None:
    """Return the value of an option group (``--opt value`` or ``--opt=value``)."""
    if "=" in option[0] and option[0].startswith("--"):
        return option[0].split("=", 1)[1]
    return option[1] if len(option) > 1 else None


def _split(
    args: Sequence[str],
    values: frozenset[str],
    lists: frozenset[str],
    optional: frozenset[str] | set[str] = frozenset(),
) -> list[list[str]]:
    """Split args into groups: an option with its values, or one positional argument.

    After ``--`` every argument is positional. An option in ``optional`` takes the next
    argument as its value only if that argument does not look like a prompt (no spaces).
    """
    groups: list[list[str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            groups.extend([a] for a in args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            groups.append([arg])
            continue
        group = [arg]
        name = _name(arg)
        if "=" in arg and arg.startswith("--"):
            pass
        elif name in lists:
            while i < len(args) and not args[i].startswith("-"):
                group.append(args[i])
                i += 1
        elif name in optional:
            if i < len(args) and not args[i].startswith("-") and " " not in args[i]:
                group.append(args[i])
                i += 1
        elif name in values and i < len(args):
            group.append(args[i])
            i += 1
        groups.append(group)
    return groups
