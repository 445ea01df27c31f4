"""Lockstep rooms: lockstepserver's client protocol (``../shared/LOCKSTEP.md``) hosted by the engine.

Submodules, imported on demand (importing this package loads nothing else):

* :mod:`~goworld.lockstep.codec`: packet framing and the id-to-message tables (no I/O).
* :mod:`~goworld.lockstep.lockstep_pb2`: the generated protobuf classes of ``lockstep.proto``.
* :mod:`~goworld.lockstep.client`: an asyncio client over KCP or WebSocket (tests, bench).

docs/LOCKSTEP-DESIGN.md says how the pieces fit together.
"""
