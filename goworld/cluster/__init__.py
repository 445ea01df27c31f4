"""What games, gates and dispatchers share about the cluster protocol.

* :mod:`~goworld.cluster.envelopes` — how each message type fills the gRPC ``Envelope``;
* :mod:`~goworld.cluster.link` — a game's or gate's batched stream to one dispatcher.
"""
