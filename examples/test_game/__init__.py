"""test_game: our port of GoWorld's ``examples/test_game`` (PROTOCOL.md §10).

It is the server GoWorld's own test bot (``examples/test_client``) drives in strict mode, so
every wire name and everything a client can observe follows GoWorld: the boot ``Account``
logs in with KVDB and hands the client to a persistent ``Avatar`` (loading it, and migrating
to its game, when it already exists); avatars move between spaces that ``SpaceService``
creates on demand, chat through filtered calls, and run the bot's tests (list attributes,
AOI, call-all echoes, nested attributes, mail, publish/subscribe). ``scripts/test_bot.py``
is our Python bot that applies the Go bot's strict checks.

Deliberate differences from upstream, none of them visible to the bot:

* ``SpaceService`` keeps the avatar count of each space up to date (GoWorld never updates
  it, so it always picks the first space of a kind);
* ``TestPublish`` publishes on every ``PublishSubscribeService`` shard, so that a wildcard
  subscription (``boss_*``) is found whichever shard holds it;
* mails are stored in KVDB as JSON text rather than msgpack bytes in a string;
* a space that died with its game is forgotten by ``SpaceService`` when an avatar fails to
  enter it (our ``on_enter_space_failed`` hook), and the avatar is sent to another space
  (GoWorld's service keeps sending avatars to the dead space).
"""

import goworld

from .account import Account
from .avatar import Avatar
from .mail import MailService
from .npcs import AOITester, Monster
from .pubsub import PublishSubscribeService
from .services import OnlineService, SpaceService
from .space import MySpace

goworld.register_space(MySpace)
goworld.register_entity(Account)
goworld.register_entity(Avatar)
goworld.register_entity(Monster)
goworld.register_entity(AOITester)
goworld.register_service(OnlineService, 3)
goworld.register_service(SpaceService, 3)
goworld.register_service(MailService, 1)
goworld.register_service(PublishSubscribeService, 3)
