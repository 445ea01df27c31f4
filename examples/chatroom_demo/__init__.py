"""chatroom_demo: our port of GoWorld's chatroom demo (PROTOCOL.md §11).

Clients register and log in on their boot ``Account``; a logged-in client is handed to its
persistent ``Avatar``, which joins rooms with ``/join <room>`` and chats with everyone in the
same room through filtered calls. Wire names (``Register``, ``Login``, ``SendChat``,
``ShowInfo``, ``ShowError``, ``OnRecvChat``) are GoWorld's, so its chatroom client works.
"""

import goworld

from .account import Account
from .avatar import Avatar
from .space import MySpace

goworld.register_space(MySpace)
goworld.register_entity(Account)
goworld.register_entity(Avatar)
