"""examples/test_game against the strict test bot (scripts/test_bot.py), GoWorld's CI in small.

GoWorld's CI starts test_game and runs its Go bot (``test_client -strict``) twice, with a
``goworld reload`` in between. Our bot applies the Go bot's strict checks (PROTOCOL.md §10.3);
here it runs over TCP, WebSocket and KCP on a 2 dispatcher / 2 game / 2 gate cluster, then over
TCP again (the logins load the avatars the first runs saved), then once more after a reload.
Every run must exit 0: no fatal condition, no timeout, no packet the bot could not apply.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from goworld import config as gwconfig
from goworld.proto import codec
from goworld.testing import ClusterRunner, make_key_pair

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "test_game"
BOT = ROOT / "scripts" / "test_bot.py"
N = 20
DURATION = 20
SERVICE_SHARDS = 3 + 3 + 1 + 3  # OnlineService, SpaceService, MailService, PublishSubscribeService
#: The Go bot never sends heartbeats, and a KCP client that exits leaves its session open: the
#: gates close clients silent for this long, so the KCP run's avatars go before the next run.
HEARTBEAT_CHECK = 5


def run_bot(
    runner: ClusterRunner, name: str, *flags: str, first: int = 1, duration: int = DURATION
) -> dict[str, Any]:
    log_path = runner.dir / f"bot-{name}.log"
    cmd = [
        sys.executable, str(BOT), "-configfile", str(runner.ini), "-server", "127.0.0.1",
        "-N", str(N), "-S", str(first), "-duration", str(duration), "-strict",
        "--avatars", str(runner.dir / "avatars.json"), *flags,
    ]
    started = time.monotonic()
    with log_path.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=duration + 60)
    text = log_path.read_text(errors="replace")
    tail = "\n".join(text.splitlines()[-60:])
    assert proc.returncode == 0 and "FATAL" not in text, (
        f"bot run {name!r} exited {proc.returncode}\n---- bot log tail\n{tail}\n---- cluster logs\n"
        + runner.logs()
    )
    results = [line[len("RESULT "):] for line in text.splitlines() if line.startswith("RESULT ")]
    assert results, f"bot run {name!r} printed no RESULT line\n{tail}"
    result = json.loads(results[-1])
    summary = [line for line in text.splitlines() if line.startswith(("test_bot:", "  "))]
    print(f"---- bot run {name} ({time.monotonic() - started:.1f} s)\n" + "\n".join(summary))
    return result


def check_run(result: dict[str, Any], name: str) -> None:
    assert result["connected"] == N and result["started"] == N, (name, result)
    assert result["panics"] == 0, (name, result)
    assert result["timeouts"] == {}, (name, result)  # DoSayInProfChannel only warns: not here
    assert result["total"] >= 2 * N, (name, result)


@pytest.mark.slow
def test_test_game_passes_the_strict_bot_on_every_transport_and_across_reload(tmp_path: Path) -> None:
    runner = ClusterRunner(tmp_path, APP, gate_extra=f"heartbeat_check_interval = {HEARTBEAT_CHECK}")
    runner.start()
    try:
        runner.wait_for_log("created here", count=SERVICE_SHARDS, timeout=60)
        # Each game's nil space calls every nil space once the 4 services are ready.
        runner.wait_for_log("TestCallNilSpaces(1, 'abc', True, 2.3)", count=4, timeout=30)
        done: set[str] = set()

        tcp = run_bot(runner, "tcp")
        check_run(tcp, "tcp")
        assert tcp["avatars"] == {"new": N, "existing": 0, "replaced": 0, "none": 0}
        done |= set(tcp["things"])

        ws = run_bot(runner, "ws", "-ws")
        check_run(ws, "ws")
        assert ws["avatars"]["existing"] == N, ws["avatars"]
        done |= set(ws["things"])

        # Other users: their avatars stay behind until the gates drop the silent KCP sessions.
        kcp = run_bot(runner, "kcp", "-kcp", first=1001)
        check_run(kcp, "kcp")
        assert kcp["avatars"]["new"] == N, kcp["avatars"]
        done |= set(kcp["things"])
        runner.wait_for_log("client disconnected", count=3 * N, timeout=HEARTBEAT_CHECK * 4)

        # The load-existing-avatar path: every login finds the avatar the runs above saved.
        again = run_bot(runner, "tcp-again")
        check_run(again, "tcp-again")
        assert again["avatars"] == {"new": 0, "existing": N, "replaced": 0, "none": 0}
        loaded = runner.grep("logs in: loading avatar")
        assert len(loaded) >= 2 * N, len(loaded)  # the ws and tcp-again logins
        done |= set(again["things"])

        runner.wait_for_log("client disconnected", count=4 * N, timeout=10)
        result = runner.cli("reload")
        assert result.returncode == 0, result.stdout + result.stderr + runner.logs()
        assert result.stdout.count("restoring game") == 2, result.stdout
        after = run_bot(runner, "after-reload")
        check_run(after, "after-reload")
        assert after["avatars"]["existing"] == N, after["avatars"]
        done |= set(after["things"])

        assert done == {
            "DoEnterRandomSpace", "DoEnterRandomNilSpace", "DoSayInWorldChannel",
            "DoSayInProfChannel", "DoTestListField", "DoTestAOI", "DoTestCallAll",
            "DoTestComplexAttr",
        }, done
        assert runner.grep("Traceback") == [], "\n".join(runner.grep("Traceback"))
        # The reload kept the service shards (SpaceService's spaces, pubsub subscriptions...).
        assert len(runner.grep("created here")) == SERVICE_SHARDS, runner.grep("created here")
    finally:
        stop = runner.stop()
        runner.kill()
        if stop.returncode != 0:
            print(stop.stdout, stop.stderr)


@pytest.mark.slow
def test_test_game_with_snappy_and_tls_and_the_mail_and_publish_things(tmp_path: Path) -> None:
    """The gates compress and encrypt; the bot also sends and fetches mails and publishes."""
    make_key_pair(tmp_path)
    runner = ClusterRunner(
        tmp_path, APP,
        gate_extra="compress_connection = 1\nencrypt_connection = 1\n"
        "rsa_key = rsa.key\nrsa_certificate = rsa.crt",
    )
    runner.start()
    try:
        runner.wait_for_log("created here", count=SERVICE_SHARDS, timeout=60)
        result = run_bot(runner, "secure-all-things", "--all-things", duration=12)
        check_run(result, "secure-all-things")
        for thing in ("DoSendMail", "DoGetMails", "DoTestPublish"):
            assert result["things"].get(thing, 0) > 0, result["things"]
    finally:
        runner.stop()
        runner.kill()


# ---- the bot's strict checks, on crafted packets (no cluster) ---------------------------------


def load_bot_module() -> Any:
    spec = importlib.util.spec_from_file_location("test_bot_under_test", BOT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Fatal(BaseException):  # not caught as a panic by the bot
    pass


def make_bot(module: Any) -> Any:
    args = argparse.Namespace(
        strict=True, ws=False, kcp=False, server="127.0.0.1", all_things=False, avatars=None,
        nosync=True,
    )
    run = module.Run(args, gwconfig.load(APP / "goworld.ini"))

    def finish(code: int) -> None:
        raise Fatal(code)

    run.finish = finish
    bot = module.Bot(run, 1)
    run.bots = [bot]
    return bot


def packet(msgtype: int, *parts: bytes) -> bytes:
    header = struct.pack("<H", 1) + b"C" * 16 if 1001 <= msgtype <= 1499 else b""
    return struct.pack("<H", msgtype) + header + b"".join(parts)


def eid(value: str) -> bytes:
    out = bytearray()
    codec.write_entity_id(out, value)
    return bytes(out)


def varstr(value: str) -> bytes:
    out = bytearray()
    codec.write_varstr(out, value)
    return bytes(out)


def data(value: Any) -> bytes:
    out = bytearray()
    codec.write_data(out, value)
    return bytes(out)


def raw_data(raw: bytes) -> bytes:
    return struct.pack("<I", len(raw)) + raw


def args(*values: Any) -> bytes:
    out = bytearray()
    codec.write_args(out, values)
    return bytes(out)


AVATAR = "A" * 16


def create_avatar(bot: Any, attrs: dict[str, Any]) -> None:
    bot.handle_packet(packet(1002, b"\x01", eid(AVATAR), varstr("Avatar"), b"\x00" * 16, data(attrs)))


def test_the_bot_applies_attribute_paths_and_is_fatal_on_what_strict_mode_forbids() -> None:
    module = load_bot_module()

    async def scenario() -> None:
        bot = make_bot(module)
        create_avatar(bot, {"complexAttr": {}})
        assert bot.player is not None and bot.player.type_name == "Avatar"
        # complexAttr.key1 = {} then ["key1", "complexAttr"] <- key2 = [[{}]], with int64 indices
        bot.handle_packet(packet(1004, eid(AVATAR), data(["complexAttr"]), varstr("key1"), data({})))
        bot.handle_packet(packet(1004, eid(AVATAR), data(["key1", "complexAttr"]), varstr("key2"),
                                 data([True, [{}]])))
        bot.handle_packet(packet(1004, eid(AVATAR), data([0, 1, "key2", "key1", "complexAttr"]),
                                 varstr("finalkey"), data("iamhere")))
        assert bot.player.attrs["complexAttr"]["key1"]["key2"][1][0]["finalkey"] == "iamhere"
        bot.handle_packet(packet(1009, eid(AVATAR), varstr("OnTestComplexAttrStep1"), args()))
        assert bot.run.panics == 0

        # A list index that is not msgpack int64 (here a fixint) is a panic, not applied.
        fixint_path = b"\x95\x00\x01\xa4key2\xa4key1\xabcomplexAttr"
        bot.handle_packet(packet(1004, eid(AVATAR), raw_data(fixint_path), varstr("finalkey"), data("x")))
        assert bot.run.panics == 1
        assert bot.player.attrs["complexAttr"]["key1"]["key2"][1][0]["finalkey"] == "iamhere"

        # OnLogin for an entity that is gone is tolerated (the Go bot exempts it).
        bot.handle_packet(packet(1009, eid("G" * 16), varstr("OnLogin"), args(True)))
        assert bot.run.anomalies["late_OnLogin"] == 1

        fatal_packets = [
            # an attribute change for an entity the bot does not have
            packet(1004, eid("X" * 16), data(None), varstr("hp"), data(1)),
            # a call for an entity the bot does not have
            packet(1009, eid("X" * 16), varstr("OnSay"), args("a", "b", "world", "c")),
            # a method the bot does not define, on an entity or through a filtered call
            packet(1009, eid(AVATAR), varstr("NoSuchMethod"), args()),
            packet(1501, b"\x00", varstr(""), varstr(""), varstr("NoSuchMethod"), args()),
            # OnTestAOI naming an entity never created on this client
            packet(1009, eid(AVATAR), varstr("OnTestAOI"), args("T" * 16)),
            # complexAttr not cleared
            packet(1009, eid(AVATAR), varstr("OnTestComplexAttrClear"), args()),
        ]
        for p in fatal_packets:
            with pytest.raises(Fatal):
                bot.handle_packet(p)
        bot.handle_packet(packet(1004, eid(AVATAR), data([0, 1, "key2", "key1", "complexAttr"]),
                                 varstr("finalkey"), data("iamthere")))
        with pytest.raises(Fatal):
            bot.handle_packet(packet(1009, eid(AVATAR), varstr("OnTestComplexAttrStep1"), args()))

    asyncio.run(scenario())


def test_a_thing_that_times_out_ends_a_strict_run() -> None:
    module = load_bot_module()

    async def scenario() -> None:
        bot = make_bot(module)
        create_avatar(bot, {"testListField": []})
        e = bot.player
        e.thing, e.thing_start = "DoTestListField", time.monotonic()
        # A list that differs from the server's is a panic: the thing is not done...
        bot.handle_packet(packet(1009, eid(AVATAR), varstr("OnTestListField"), args([5])))
        assert bot.run.panics == 1 and e.thing == "DoTestListField"
        # ... and its timeout is fatal, except for DoSayInProfChannel's.
        with pytest.raises(Fatal):
            bot._thing_timeout(e, "DoTestListField")
        e.thing = "DoSayInProfChannel"
        bot._thing_timeout(e, "DoSayInProfChannel")
        assert bot.run.timeouts["DoSayInProfChannel"] == 1
        for handle in list(e.timers):
            e.cancel(handle)

    asyncio.run(scenario())
