"""The cluster protocol between gates/games and dispatchers, over gRPC.

``cluster.proto`` defines an ``Envelope`` (a few routing fields plus opaque payload bytes) and
a ``Batch`` of envelopes; each peer sends at most one batch per tick on one long-lived
bidirectional ``Dispatcher.Connect`` stream. The generated ``cluster_pb2*.py`` modules are
committed; ``scripts/gen_proto.py`` regenerates them and a test checks they are current.

Import the generated modules from here (``from goworld.rpc import cluster_pb2``) so that
``grpc`` and ``protobuf`` are only loaded by the processes that use them.
"""
