"""A gate whose dispatcher stream broke: what the dispatcher's SET_GATE_ID echo means."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gate.service import GateService
from goworld.cluster.envelopes import Envelope
from goworld.proto.msgtypes import MsgType


class Transport:
    def __init__(self) -> None:
        self.closed = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4000) if name == "peername" else default


@pytest.mark.asyncio
async def test_a_dispatcher_that_gave_up_on_the_gate_has_its_clients_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = GateService(1, num_dispatchers=1, send=lambda d, e: None)
    transports = []
    for _ in range(3):
        proxy = gate.new_proxy("tcp")
        t = Transport()
        proxy.connection_made(t)  # type: ignore[arg-type]
        transports.append(t)
    caplog.set_level(logging.WARNING, "goworld.gate")
    gate.handle_dispatcher_message(1, Envelope(msgtype=MsgType.SET_GATE_ID, gate_id=1, name="kept"))
    assert not any(t.closed for t in transports)
    gate.handle_dispatcher_message(1, Envelope(msgtype=MsgType.SET_GATE_ID, gate_id=1, name="dropped"))
    await asyncio.sleep(0)
    assert all(t.closed for t in transports)
    assert sum("had given up on this gate" in r.getMessage() for r in caplog.records) == 1
