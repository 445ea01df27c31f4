"""chatroom_demo: GoWorld's chatroom demo grown into a chat service (docs/CHAT-DESIGN.md).

Clients register and log in on their boot ``Account`` (``LoginGuard`` locks a name after too
many failures); a logged-in client is handed to its persistent ``Avatar``. Channels are
persistent ``Channel`` entities (owners, ops, bans, timeouts, topic, history) that
``ChannelDirectory`` creates, loads at start and lists; ``Presence`` knows who is online (PMs,
statuses, notices). Wire names of GoWorld's chatroom (``Register``, ``Login``, ``SendChat``,
``ShowInfo``, ``ShowError``, ``OnRecvChat``) keep their meaning, so its client works.
"""

import goworld

from .account import Account
from .avatar import Avatar
from .channel import Channel
from .directory import ChannelDirectory
from .guard import LoginGuard
from .presence import Presence
from .space import MySpace

goworld.register_space(MySpace)
goworld.register_entity(Account)
goworld.register_entity(Avatar)
goworld.register_entity(Channel)
goworld.register_service(ChannelDirectory, 1)
goworld.register_service(Presence, 1)
goworld.register_service(LoginGuard, 1)
