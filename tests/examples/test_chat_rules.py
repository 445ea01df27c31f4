"""examples/chatroom_demo/rules.py: the chat service's pure rules (names, texts, slash commands,
ranks, times), without a cluster. The package is imported the way a game imports it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from game.loader import load_game_package

APP = Path(__file__).resolve().parents[2] / "examples" / "chatroom_demo"


@pytest.fixture(scope="module")
def rules() -> ModuleType:
    registry = load_game_package(APP, boot_entity="Account")
    assert {"Account", "Avatar", "Channel", "ChannelDirectory", "Presence", "LoginGuard"} <= set(registry.types)
    assert {name: d.service_shards for name, d in registry.services.items()} == {
        "ChannelDirectory": 1, "Presence": 1, "LoginGuard": 1}
    return sys.modules["chatroom_demo.rules"]


@pytest.mark.parametrize("name", ["bob", "Alice_1", "x-y-z", "a" * 24, "h1234567x9abcdefhonenew"])
def test_good_user_names(rules: ModuleType, name: str) -> None:
    assert rules.check_user_name(name) is None


@pytest.mark.parametrize("name", ["", "ab", "a" * 25, "bad name", "<b>", "ümlaut", "a.b", "tab\tx", 5])
def test_bad_user_names_say_the_rule(rules: ModuleType, name: object) -> None:
    err = rules.check_user_name(name)
    assert err is not None and "3 to 24 letters, digits, '_' or '-'" in err


def test_passwords(rules: ModuleType) -> None:
    assert rules.check_password("pw") is None and rules.check_password("p" * 64) is None
    assert rules.check_password("p") == "the password must be 2 to 64 characters"
    assert rules.check_password("p" * 65) is not None


def test_channel_names_are_case_insensitive_keys(rules: ModuleType) -> None:
    assert rules.channel_key(" #Lobby ") == "lobby"
    assert rules.check_channel_name("tea-room_2") is None
    assert rules.check_channel_name("a") is not None
    assert rules.check_channel_name("has space") is not None
    assert rules.check_channel_name("c" * 25) is not None


def test_clean_text(rules: ModuleType) -> None:
    assert rules.clean_text("  hi  ", 10) == ("hi", None)
    assert rules.clean_text("a\x00b\nc\u202ed", 20) == ("a b c d", None)
    assert rules.clean_text("<script>x</script>", 50) == ("<script>x</script>", None)  # escaping is the browser's
    assert rules.clean_text("   ", 10) == ("", "the message is empty")
    assert rules.clean_text("", 10, "topic", empty_ok=True) == ("", None)
    assert rules.clean_text("x" * 11, 10) == ("", "the message is too long: 11 characters, at most 10")
    assert rules.clean_text(5, 10)[1] == "the message must be text"


@pytest.mark.parametrize(("text", "name", "args"), [
    ("/join Lobby", "join", ("lobby",)),
    ("/JOIN #tea", "join", ("tea",)),
    ("/create tea private", "create", ("tea", "private")),
    ("/create tea", "create", ("tea", "")),
    ("/topic tea  green,  only  ", "topic", ("tea", "green,  only")),
    ("/topic tea", "topic", ("tea", "")),
    ("/ban tea bob", "ban", ("tea", "bob", "")),
    ("/ban tea bob 90", "ban", ("tea", "bob", "90")),
    ("/timeout tea bob 5", "timeout", ("tea", "bob", "5")),
    ("/private tea ON", "private", ("tea", "on")),
    ("/msg bob hello there", "msg", ("bob", "hello there")),
    ("/status Away out for lunch", "status", ("away", "out for lunch")),
    ("/status busy", "status", ("busy", "")),
    ("/list", "list", ("",)),
    ("/list green tea", "list", ("green tea",)),
    ("/me tea waves", "me", ("tea", "waves")),
    ("/help", "help", ()),
])
def test_commands_parse(rules: ModuleType, text: str, name: str, args: tuple[str, ...]) -> None:
    command, err = rules.parse_command(text)
    assert err is None and command == rules.Command(name, args)


@pytest.mark.parametrize(("text", "error"), [
    ("/dance", "unknown command: /dance (try /help)"),
    ("/join", "usage: /join NAME"),
    ("/kick tea", "usage: /kick NAME USER"),
    ("/leave tea now", "too many arguments: /leave NAME"),
    ("/create tea public", "usage: /create NAME [private]"),
    ("/private tea maybe", "usage: /private NAME on|off"),
    ("/timeout tea bob", "usage: /timeout NAME USER MINUTES"),
    ("/timeout tea bob 0", "the duration must be a whole number of minutes from 1 to 1440, not '0'"),
    ("/timeout tea bob 1441", "the duration must be a whole number of minutes from 1 to 1440, not '1441'"),
    ("/ban tea bob -5", "the duration must be a whole number of minutes from 1 to 525600"),
    ("/status asleep", "the status is one of online, away, busy, not 'asleep'"),
    ("/join a", "bad channel name 'a'"),
    ("/kick tea b*b", "bad user name 'b*b'"),
    ("/msg bob " + "x" * 501, "the message is too long: 501 characters, at most 500"),
    ("/topic tea " + "x" * 201, "the topic is too long: 201 characters, at most 200"),
    ("/status away " + "x" * 101, "the status message is too long"),
    ("no slash", "a command starts with '/'"),
])
def test_bad_commands_say_what_is_wrong(rules: ModuleType, text: str, error: str) -> None:
    command, err = rules.parse_command(text)
    assert command is None and err is not None and err.startswith(error), err


def test_every_command_has_usage_and_help(rules: ModuleType) -> None:
    help_text = rules.help_text()
    for name in rules.COMMANDS:
        assert rules.usage(name) in help_text
    assert rules.COMMANDS["msg"].bucket == "message" and rules.COMMANDS["create"].bucket == "create"
    assert rules.COMMANDS["list"].bucket == "search" and rules.COMMANDS["kick"].bucket == "command"


def test_ranks(rules: ModuleType) -> None:
    rank = rules.rank_of
    assert rank("admin", owner="x", ops=[], member=False) == rules.RANK_ADMIN
    assert rank("o", owner="o", ops=["o"], member=True) == rules.RANK_OWNER
    assert rank("p", owner="o", ops=["p"], member=False) == rules.RANK_OP
    assert rank("m", owner="o", ops=[], member=True) == rules.RANK_MEMBER
    assert rank("n", owner="", ops=[], member=False) == rules.RANK_NONE
    can = rules.can_moderate
    assert can(rules.RANK_OP, rules.RANK_MEMBER) and can(rules.RANK_OP, rules.RANK_NONE)
    assert not can(rules.RANK_OP, rules.RANK_OP) and not can(rules.RANK_OP, rules.RANK_OWNER)
    assert can(rules.RANK_OWNER, rules.RANK_OP) and can(rules.RANK_ADMIN, rules.RANK_OWNER)
    assert not can(rules.RANK_ADMIN, rules.RANK_ADMIN) and not can(rules.RANK_MEMBER, rules.RANK_NONE)
    assert rules.role_of("o", owner="o", ops=[]) == "owner" and rules.role_of("p", owner="", ops=["p"]) == "op"
    assert rules.role_of("admin", owner="o", ops=[]) == "member"


def test_times(rules: ModuleType) -> None:
    assert rules.format_until(0) == "forever"
    assert rules.format_until(1_800_000_000) == "2027-01-15 08:00:00 UTC"
    assert rules.format_wait(1.234) == "1.2 s" and rules.format_wait_whole(299.2) == "300 s"
    now = time.time()
    assert rules.active(0, now) and rules.active(now + 1, now) and not rules.active(now - 1, now)
    assert not rules.active(None, now)
    assert rules.parse_minutes("15", 1, 60, "x") == (15, None)


def test_search(rules: ModuleType) -> None:
    assert rules.search_matches("", "tea", "")
    assert rules.search_matches("TEA", "teahouse", "")
    assert rules.search_matches("milk", "tea", "no Milk here")
    assert not rules.search_matches("coffee", "tea", "green")
