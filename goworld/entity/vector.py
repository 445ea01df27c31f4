"""Positions: ``Vector3`` (x, y, z as float32-range floats) and yaw helpers (PROTOCOL.md §1.3).

Yaw is in degrees: yaw 0 faces +Z and yaw 90 faces +X (Unity's ``Euler(0, yaw, 0)``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["Vector3", "ORIGIN", "dir_to_yaw"]


class Vector3(NamedTuple):
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0

    def __add__(self, other: object) -> Vector3:
        if not isinstance(other, Vector3):
            return NotImplemented
        return Vector3(self.x + other.x, self.y + other.y, self.z + other.z)

    def __sub__(self, other: Vector3) -> Vector3:
        return Vector3(self.x - other.x, self.y - other.y, self.z - other.z)

    def __mul__(self, k: object) -> Vector3:
        if not isinstance(k, (int, float)):
            return NotImplemented
        return Vector3(self.x * k, self.y * k, self.z * k)

    def length(self) -> float:
        return math.sqrt(self.x * self.x + self.y * self.y + self.z * self.z)

    def distance_to(self, other: Vector3) -> float:
        return (self - other).length()

    def normalized(self) -> Vector3:
        n = self.length()
        return self if n == 0 else Vector3(self.x / n, self.y / n, self.z / n)


def dir_to_yaw(direction: Vector3) -> float:
    """The yaw (degrees) that faces ``direction`` on the XZ plane."""
    return math.degrees(math.atan2(direction.x, direction.z))


#: (0, 0, 0), for default arguments.
ORIGIN = Vector3()
