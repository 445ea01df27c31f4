"""Entities without behaviour: the monsters of every space and the AOI test probe."""

import goworld


class Monster(goworld.Entity):
    """Ten of them stand at the origin of every space (their ``name`` is never set)."""

    aoi_distance = 100
    attributes = {"name": goworld.ALL_CLIENTS}


class AOITester(goworld.Entity):
    """Created next to an avatar by ``TestAOI`` and destroyed right after the client saw it."""

    aoi_distance = 100
    attributes = {"name": goworld.ALL_CLIENTS}
