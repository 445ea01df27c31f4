"""asyncio adapters moving bytes between sockets and the sans-I/O protocol core."""
