"""What games, gates and dispatchers share about the cluster protocol.

* :mod:`~goworld.cluster.envelopes` — how each message type fills the gRPC ``Envelope``;
* :mod:`~goworld.cluster.link` — a game's or gate's batched stream to one dispatcher;
* :mod:`~goworld.cluster.auth` — the cluster secret and the token each stream opens with;
* :mod:`~goworld.cluster.tls` — optional mutual TLS on those streams.
"""
