"""Pure rules of the chat service: names, texts, slash commands, roles, times.

No engine calls here (unit-tested in tests/examples/test_chat_rules.py); every checker returns
an error text for the player (what is wrong and why) or None.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from . import settings

_USER_RE = re.compile(
    rf"^[A-Za-z0-9_-]{{{settings.USER_NAME_MIN},{settings.USER_NAME_MAX}}}$"
)
_CHANNEL_RE = re.compile(
    rf"^[a-z0-9_-]{{{settings.CHANNEL_NAME_MIN},{settings.CHANNEL_NAME_MAX}}}$"
)
#: C0/C1 controls and the Unicode line/paragraph separators and bidi overrides: never in a text
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

STATUSES = ("online", "away", "busy")

# roles, ranked: who may act on whom (see can_moderate)
RANK_NONE, RANK_MEMBER, RANK_OP, RANK_OWNER, RANK_ADMIN = 0, 1, 2, 3, 4
ROLE_NAMES = {RANK_MEMBER: "member", RANK_OP: "op", RANK_OWNER: "owner", RANK_ADMIN: "admin"}


# ---- names and texts -----------------------------------------------------------------------


def check_user_name(name: str) -> str | None:
    if not isinstance(name, str) or not _USER_RE.match(name):
        return (
            f"bad user name {shorten(name)!r}: {settings.USER_NAME_MIN} to "
            f"{settings.USER_NAME_MAX} letters, digits, '_' or '-'"
        )
    return None


def check_password(password: str) -> str | None:
    if not isinstance(password, str) or not settings.PASSWORD_MIN <= len(password) <= settings.PASSWORD_MAX:
        return f"the password must be {settings.PASSWORD_MIN} to {settings.PASSWORD_MAX} characters"
    return None


def channel_key(name: str) -> str:
    """Channel names are case-insensitive: ``#Lobby`` is ``lobby``."""
    name = name.strip()
    return name[1:].lower() if name.startswith("#") else name.lower()


def check_channel_name(name: str) -> str | None:
    """``name`` as :func:`channel_key` made it."""
    if not _CHANNEL_RE.match(name):
        return (
            f"bad channel name {shorten(name)!r}: {settings.CHANNEL_NAME_MIN} to "
            f"{settings.CHANNEL_NAME_MAX} letters, digits, '_' or '-'"
        )
    return None


def clean_text(text: str, limit: int, what: str = "message", *, empty_ok: bool = False) -> tuple[str, str | None]:
    """``(text, None)``: controls made spaces, trimmed, within ``limit``; else ``("", error)``."""
    if not isinstance(text, str):
        return "", f"the {what} must be text"
    text = _CONTROL_RE.sub(" ", text).strip()
    if not text and not empty_ok:
        return "", f"the {what} is empty"
    if len(text) > limit:
        return "", f"the {what} is too long: {len(text)} characters, at most {limit}"
    return text, None


def shorten(text: object, limit: int = 40) -> str:
    s = str(text)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ---- times ---------------------------------------------------------------------------------


def format_until(until: float) -> str:
    """A ban's or timeout's end for people: ``2026-12-06 14:05 UTC``, or ``forever`` (0)."""
    if not until:
        return "forever"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))


def format_wait(seconds: float) -> str:
    return f"{seconds:.1f} s"


def format_wait_whole(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))} s"


def active(until: float | None, now: float) -> bool:
    """A ban (0: no end) or timeout ending at ``until`` still holds at ``now``."""
    return until is not None and (until == 0 or until > now)


def parse_minutes(text: str, low: int, high: int, what: str) -> tuple[int, str | None]:
    if not text.isdigit() or not low <= int(text) <= high:
        return 0, f"{what} must be a whole number of minutes from {low} to {high}, not {shorten(text)!r}"
    return int(text), None


# ---- roles ---------------------------------------------------------------------------------


def rank_of(name: str, *, owner: str, ops: list[str] | set[str], member: bool) -> int:
    """A user's rank in a channel (global admins are ranked by the caller)."""
    if name in settings.ADMINS:
        return RANK_ADMIN
    if owner and name == owner:
        return RANK_OWNER
    if name in ops:
        return RANK_OP
    return RANK_MEMBER if member else RANK_NONE


def role_of(name: str, *, owner: str, ops: list[str] | set[str]) -> str:
    """The role shown in member lists: ``owner``, ``op`` or ``member`` (admins by their role in
    the channel)."""
    if owner and name == owner:
        return "owner"
    if name in ops:
        return "op"
    return "member"


def can_moderate(actor: int, target: int) -> bool:
    """Ops act on members; owners on ops and members; admins on everyone but admins."""
    return actor >= RANK_OP and actor > target


# ---- slash commands ------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    params: tuple[str, ...]  # "channel", "user", "text" (the rest), "?minutes", "onoff", "status", "?query", "?private", "?text"
    who: str  # for /help
    what: str
    bucket: str = "command"  # which throttle: message, create, search, command


COMMANDS: dict[str, Spec] = {
    "join": Spec(("channel",), "anyone", "join a channel"),
    "leave": Spec(("channel",), "member", "leave a channel"),
    "create": Spec(("channel", "?private"), "anyone", "create a channel and own it ('private': by invitation)", "create"),
    "topic": Spec(("channel", "?text"), "op, owner, admin", "set the topic (nothing: clear it)"),
    "op": Spec(("channel", "user"), "owner, admin", "appoint an operator"),
    "deop": Spec(("channel", "user"), "owner, admin", "remove an operator"),
    "kick": Spec(("channel", "user"), "op, owner, admin", "remove from the channel (may rejoin)"),
    "ban": Spec(("channel", "user", "?minutes"), "op, owner, admin", "remove and refuse joins (no minutes: until unbanned)"),
    "unban": Spec(("channel", "user"), "op, owner, admin", "lift a ban"),
    "timeout": Spec(("channel", "user", "minutes"), "op, owner, admin", "the user stays but cannot post"),
    "invite": Spec(("channel", "user"), "op, owner, admin", "allow the user into a private channel"),
    "private": Spec(("channel", "onoff"), "owner, admin", "make the channel private or public"),
    "msg": Spec(("user", "text"), "anyone", "a private message", "message"),
    "me": Spec(("channel", "text"), "member", "an action in a channel ('/me waves')", "message"),
    "ignore": Spec(("user",), "anyone", "ignore a user (their PMs are refused)"),
    "unignore": Spec(("user",), "anyone", "stop ignoring"),
    "status": Spec(("status", "?text"), "anyone", "online, away or busy, and a message"),
    "notice": Spec(("text",), "admin", "a notice to every online player"),
    "list": Spec(("?query",), "anyone", "public channels (name or topic containing QUERY)", "search"),
    "who": Spec(("channel",), "member", "the member list again"),
    "help": Spec((), "anyone", "this list"),
}

USAGE_WORDS = {
    "channel": "NAME", "user": "USER", "text": "TEXT", "?text": "[TEXT]", "?minutes": "[MINUTES]",
    "minutes": "MINUTES", "onoff": "on|off", "status": "online|away|busy", "?query": "[QUERY]",
    "?private": "[private]",
}


def usage(name: str) -> str:
    spec = COMMANDS[name]
    return " ".join([f"/{name}", *(USAGE_WORDS[p] for p in spec.params)])


def help_text() -> str:
    return "; ".join(f"{usage(n)}: {s.what} ({s.who})" for n, s in COMMANDS.items())


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]  # one per param; optional ones missing are ""


def parse_command(text: str) -> tuple[Command | None, str | None]:
    """``/name args...`` -> ``(Command, None)`` with every argument checked for its kind (names
    by their rules, ``text`` trimmed and bounded), or ``(None, error)``. Channel names come back
    as keys (lower case, no ``#``)."""
    if not isinstance(text, str) or not text.startswith("/"):
        return None, "a command starts with '/'"
    text = _CONTROL_RE.sub(" ", text)
    head, _, rest = text[1:].strip().partition(" ")
    name = head.lower()
    spec = COMMANDS.get(name)
    if spec is None:
        return None, f"unknown command: /{shorten(head, 20)} (try /help)"
    args: list[str] = []
    rest = rest.strip()
    for i, kind in enumerate(spec.params):
        last = i == len(spec.params) - 1
        optional = kind.startswith("?")
        if kind in ("text", "?text", "?query"):
            word, rest = rest.strip(), ""
        else:
            word, _, rest = rest.strip().partition(" ")
        if not word:
            if optional:
                args.append("")
                continue
            return None, f"usage: {usage(name)}"
        err: str | None = None
        if kind == "channel":
            word = channel_key(word)
            err = check_channel_name(word)
        elif kind == "user":
            err = check_user_name(word)
        elif kind in ("text", "?text"):
            limit = settings.TOPIC_MAX if name == "topic" else (
                settings.STATUS_MSG_MAX if name == "status" else settings.TEXT_MAX)
            word, err = clean_text(word, limit, "topic" if name == "topic" else (
                "status message" if name == "status" else "message"))
        elif kind in ("minutes", "?minutes"):
            high = settings.TIMEOUT_MINUTES_MAX if name == "timeout" else settings.BAN_MINUTES_MAX
            _, err = parse_minutes(word, 1, high, "the duration")
        elif kind == "onoff":
            word = word.lower()
            if word not in ("on", "off"):
                err = f"usage: {usage(name)}"
        elif kind == "status":
            word = word.lower()
            if word not in STATUSES:
                err = f"the status is one of {', '.join(STATUSES)}, not {shorten(word)!r}"
        elif kind == "?private":
            word = word.lower()
            if word != "private":
                err = f"usage: {usage(name)}"
        elif kind == "?query":
            word, err = clean_text(word, 50, "query")
        if err:
            return None, err
        args.append(word)
        if last and rest.strip():
            return None, f"too many arguments: {usage(name)}"
    return Command(name, tuple(args)), None


def search_matches(query: str, name: str, topic: str) -> bool:
    q = query.lower()
    return not q or q in name.lower() or q in topic.lower()
