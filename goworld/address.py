"""What per-address bounds count (the gate's ``max_connections_per_ip``, the lockstep
process's ``max_sessions_per_ip`` and ``http_rooms_per_ip``)."""

from __future__ import annotations

import ipaddress

__all__ = ["address_key"]


def address_key(ip: str) -> str:
    """An IPv4 address (IPv4-mapped IPv6 included) as it is, an IPv6 address as its /64 (one
    host usually owns a whole /64); anything else (a name) as it is."""
    if ":" not in ip:
        return ip
    try:
        address = ipaddress.IPv6Address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
