"""Coverage-guided fuzzing of the client-protocol decoders with atheris (libFuzzer).

Every input is fed to :class:`goworld.proto.Framer` (whole, and again split in two at a point
taken from the input) and each payload it yields, plus the raw input itself, is decoded with
:func:`goworld.proto.decode_payload` in every :class:`~goworld.proto.Dialect`. Only
:class:`goworld.errors.RemoteProtocolError` (including :class:`~goworld.errors.PacketTooLarge`)
may escape the library; anything else is a bug and makes libFuzzer stop with a crash file.

Not part of the pytest run (``tests/conftest.py`` ignores ``tests/fuzz/``). To run::

    pip install atheris
    python tests/fuzz/fuzz_decoder.py -max_total_time=60

Any libFuzzer flag works, e.g. a corpus directory as a positional argument, ``-jobs=4``,
or a crash file to replay it.
"""

from __future__ import annotations

import sys


def _check(data: bytes) -> None:
    from goworld.errors import PacketTooLarge, RemoteProtocolError
    from goworld.proto import Dialect, Framer, decode_payload
    from goworld.proto.messages import Message

    dialects = list(Dialect)

    def decode_all(payload: bytes) -> None:
        for dialect in dialects:
            try:
                msg = decode_payload(payload, dialect)
            except RemoteProtocolError:
                continue
            assert isinstance(msg, Message), msg

    decode_all(data)

    def frames(parts: list[bytes]) -> list[bytes] | None:
        framer = Framer(max_payload=1 << 16)
        out: list[bytes] = []
        try:
            for part in parts:
                out += framer.feed(part)
        except PacketTooLarge:
            return None
        consumed = sum(4 + len(p) for p in out)
        assert framer.buffered == len(data) - consumed, (framer.buffered, len(data), consumed)
        return out

    whole = frames([data])
    cut = data[0] % (len(data) + 1) if data else 0
    split = frames([data[:cut], data[cut:]])
    assert whole == split, "framing depends on how the stream is split"
    for payload in whole or ():
        decode_all(payload)


def TestOneInput(data: bytes) -> None:  # noqa: N802 -- the name atheris expects
    _check(data)


def main() -> None:
    import atheris

    with atheris.instrument_imports():
        import goworld.errors  # noqa: F401
        import goworld.proto  # noqa: F401
        import goworld.proto.codec  # noqa: F401
        import goworld.proto.framing  # noqa: F401
        import goworld.proto.gwmsgpack  # noqa: F401
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
