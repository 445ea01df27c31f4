"""lockstep_demo: squares on a grid, played in lockstep (frame sync) in the browser.

The game itself runs in the pages (``web/``): the cluster's lockstep process (``[lockstep]`` in
goworld.ini) serves them under ``/static/``, creates rooms through its HTTP API and relays the
players' inputs as numbered frames over WebSocket. The game process only needs a boot entity;
game code could also make rooms with ``goworld.create_lockstep_room`` (docs/LOCKSTEP-DESIGN.md).
"""

import goworld

from .account import Account

goworld.register_entity(Account)
