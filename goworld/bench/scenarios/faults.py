"""Faults under load: kill -9 and SIGSTOP of each role in 1+1+1 and 2+2+2 (issue 15;
scripts/bench_faults.py, whose docstring says what is measured and how)."""

from __future__ import annotations

from typing import Any

from goworld.bench.result import BenchError, Result
from goworld.bench.scenarios import _script

TITLE = "Faults (issue 15: kill -9 and SIGSTOP of each role of examples/test_game under load)"
KIND = {"kill": "kill -9", "stop": "SIGSTOP"}
LAYOUT = {"111": "1+1+1", "222": "2+2+2"}


def _s(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


def _detect(o: dict[str, Any]) -> str:
    client, log = o.get("detect_client_s"), o.get("detect_log_s")
    if client is None and log is None:
        return "nothing noticed"
    parts = []
    if client is not None:
        parts.append(f"told {_s(client, 3)}")
    if log is not None:
        parts.append(f"log {_s(log, 3)}")
    return " / ".join(parts)


def _disturbed(o: dict[str, Any]) -> str:
    text = f"{o['disturbed']}/{o['connected']}"
    if o["close_codes"]:
        text += " (" + ", ".join(f"{n} {c}" for c, n in sorted(o["close_codes"].items())) + ")"
    return text


def _relogin(o: dict[str, Any]) -> str:
    if not o["disturbed"]:
        return "–"
    text = f"{o['relogin_ok']}/{o['disturbed']}"
    return text if not o["relogin_failed"] else text + " (" + "; ".join(o["relogin_failed"])[:120] + ")"


def _bots(o: dict[str, Any]) -> str:
    during = "errors" if o.get("bot_during_errors") else "clean"
    after = {True: "passed", False: "FAILED", None: "–"}[o.get("bot_after_passed")]
    return f"{during} / {after}"


def _why_first(o: dict[str, Any]) -> str:
    line = o.get("detect_log_line") or ""
    _, _, rest = line.partition(": ")
    return rest[:110] if rest else "–"


def _back(o: dict[str, Any], kind: str) -> str:
    if not o["full_strength"]:
        return "NOT back"
    text = _s(o["recover_s"]) + (" after SIGCONT" if kind == "stop" else "")
    stuck = len(o.get("newcomer_failures") or [])
    return text + (f" ({stuck} newcomer{'s' if stuck > 1 else ''} stuck first)" if stuck else "")


def row(o: dict[str, Any]) -> list[Any]:
    role, kind = o["fault"].split("-")
    if o.get("error"):
        return [LAYOUT[o["layout"]], o["target"], KIND[kind], "could not run", "", "", "", "", "",
                "", o["error"][:200]]
    return [
        LAYOUT[o["layout"]], o["target"], KIND[kind], _detect(o),
        _back(o, kind),
        _disturbed(o), _relogin(o), _s(o.get("max_gap_s")),
        f"{len(o['data_lost'])}/{o['saved_checked']}", _bots(o), _why_first(o),
    ]


def run(quick: bool) -> Result:
    args = ["--quick"] if quick else []
    _, data = _script.run_json("bench_faults.py", *args, timeout=1800 if quick else 3600)
    outcomes: list[dict[str, Any]] = data["faults"]
    done = [o for o in outcomes if not o.get("error")]
    if not done:
        raise BenchError("no fault ran: " + "; ".join(o["error"][:200] for o in outcomes))
    figures: dict[str, float] = {}
    for o in done:
        key = f"{o['layout']}.{o['fault']}"
        for name in ("detect_client_s", "detect_log_s", "recover_s", "max_gap_s", "relogin_max_s"):
            if o.get(name) is not None:
                figures[f"{key}.{name}"] = float(o[name])
        figures[f"{key}.disturbed"] = float(o["disturbed"])
        figures[f"{key}.connected"] = float(o["connected"])
        figures[f"{key}.data_lost"] = float(len(o["data_lost"]))
        figures[f"{key}.back"] = float(o["full_strength"] and o["newcomer_ok"])
        figures[f"{key}.bot_after_passed"] = float(bool(o.get("bot_after_passed")))
    back = [o for o in done if o["full_strength"] and o["newcomer_ok"]]
    kills = [o for o in back if o["fault"].endswith("-kill")]
    lost = sum(len(o["data_lost"]) for o in done)
    bots_ok = sum(1 for o in done if o.get("bot_after_passed"))
    recover = [o["recover_s"] for o in kills if o["recover_s"] is not None]
    told = [o["detect_client_s"] for o in done if o.get("detect_client_s") is not None]
    figures.update({"faults": float(len(done)), "back": float(len(back)), "data_lost": float(lost),
                    "bot_after_passed": float(bots_ok)})
    if recover:
        figures["kill.recover_max_s"] = max(recover)
    plan = data.get("plan", {})
    notes = [
        "One cluster per layout (SQLite, supervised with the default back-off: restart_backoff "
        "1 s), faults one after another on it, each process killed at most once. Load during "
        f"each fault: {plan.get('bots')} Go bots (test_client -strict, TCP, every gate) and "
        f"{plan.get('players')} Python players spread over the gates, each calling TestListField "
        "every 0.5 s. The fault hits <role>1; SIGSTOP lasts "
        f"{plan.get('stop_seconds')} s, then SIGCONT.",
        "Detect: seconds from the fault to the first player told (closed, with the gate's notice "
        "when there is one) / to the first WARNING or worse saying a fault was noticed (a game "
        "down or silent, a stream lost, a gate gone, an unexpected exit) that any process or the "
        "supervisor logged (the 'first log line' column). Back: seconds until goworld status --json is all "
        "up with every game serving and a newcomer has logged in and been served (from the kill; "
        "from the SIGCONT for SIGSTOP, whose stop time is not counted).",
        "Disturbed: Python players closed out of connected (game_lost: told by the gate that "
        "their game died; no notice: their gate died). Log in again: disturbed players whose "
        "avatar loaded again (from storage) and was served. Max gap: the longest pause between "
        "two replies of an undisturbed player around the fault (s).",
        "Data lost: players saved (logged out) before this fault or an earlier one on the same "
        "cluster whose avatar did not come back with its id and prof. What a dead game had not "
        "saved is not counted (test_game saves an avatar when its client leaves).",
        "Go bots: the run during the fault (bots on a dead game or gate see their connection "
        "closed: errors) / a fresh run after recovery, judged by its strict verdict.",
        "Bots, players and cluster share the 2 cores.",
        "A newcomer stuck first: one that did not get its avatar within 15 s (kept its "
        "Account) before another got in; after a dispatcher's restart that is the dispatcher "
        "dropping what a game sends to a gate that has not reconnected to it yet (a bug: "
        "tests/integration/test_faults.py, xfail).",
        "Spaces that died with a game: test_game's SpaceService may still send an avatar into "
        "one (it learns of the death lazily); the game logs 'space ... not found, enter_space "
        "cancelled', runs the avatar's on_enter_space_failed, and test_game's Avatar tells "
        "the service (which forgets that space) and asks again, so the bot's "
        "DoEnterRandomSpace still succeeds (before session 8 it timed out).",
        "A stopped gate is noticed by nobody (no health check of gates): its players are paused "
        "for the stop, then served. A stopped dispatcher's 'first log line' is its own, written "
        "when it resumes: it counts its own stop as the games' silence and marks them "
        "unhealthy until their next batch (game_hang_timeout; a false alarm, see the "
        "dispatcher's tick).",
    ]
    for o in outcomes:
        if o.get("error"):
            notes.append(f"{LAYOUT[o['layout']]} {o['fault']}: could not run: {o['error'][:300]}")
    summary = (
        f"{len(back)} of {len(done)} faults back to full strength by themselves"
        + (f" (after a kill -9: {min(recover):.1f}-{max(recover):.1f} s)" if recover else "")
        + (f"; players told {min(told) * 1000:.0f}-{max(told) * 1000:.0f} ms after the fault"
           if told else "")
        + f"; data lost: {lost}; the Go bot run after the fault passed {bots_ok} of {len(done)}."
    )
    return Result(
        scenario="faults",
        title=TITLE,
        commands=[f"goworld bench --only faults{' --quick' if quick else ''}",
                  _script.command("bench_faults.py", *args)],
        columns=["layout", "process", "fault", "detect s", "back s", "disturbed", "log in again",
                 "max gap s", "data lost", "Go bots during / after", "first log line"],
        rows=[row(o) for o in outcomes],
        figures=figures,
        summary=summary,
        notes=notes,
        series={"faults": outcomes},
    )
