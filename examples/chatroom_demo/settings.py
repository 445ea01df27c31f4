"""The chat service's figures: who is an admin, limits on names and texts, throttles, the login
guard. Plain constants, read by the entities (docs/CHAT-DESIGN.md)."""

import os

#: user names that are global admins: every moderation power in every channel, /notice
ADMINS: tuple[str, ...] = ("admin",)

#: channels that exist from the first start on (created by ChannelDirectory when missing),
#: with their first topic; nobody owns them, ops and admins run them
DEFAULT_CHANNELS: dict[str, str] = {
    "lobby": "Welcome! /list shows the channels, /create NAME makes your own, /help the commands",
}

#: messages of a channel kept and shown to whoever joins
HISTORY = 50

# ---- names and texts (the rules are in rules.py) -------------------------------------------
USER_NAME_MIN, USER_NAME_MAX = 3, 24
CHANNEL_NAME_MIN, CHANNEL_NAME_MAX = 2, 24
PASSWORD_MIN, PASSWORD_MAX = 2, 64
TEXT_MAX = 500  # a message, a PM, a notice
TOPIC_MAX = 200
STATUS_MSG_MAX = 100
IGNORE_MAX = 100  # names on one ignore list
CHANNELS_MAX = 20  # channels one player is in at once
LIST_MAX = 100  # channels in one /list answer
TIMEOUT_MINUTES_MAX = 1440  # a day
BAN_MINUTES_MAX = 525_600  # a year (no minutes: until unbanned)

# ---- throttles per player (goworld.RateLimiter: rate per second, burst) ---------------------
# Below the engine's hard per-method limits (@goworld.rpc(rate=..., burst=...)); these answer
# with a message. The message burst covers a few seconds of a game stalled or reloading (the
# calls then arrive together) for someone chatting at the rate.
MESSAGE_RATE, MESSAGE_BURST = 2.0, 20.0  # Say, SendChat, /msg, /me
CREATE_RATE, CREATE_BURST = 1 / 60, 2.0  # /create
SEARCH_RATE, SEARCH_BURST = 1.0, 3.0  # /list, ListChannels
COMMAND_RATE, COMMAND_BURST = 5.0, 10.0  # every other command

# ---- login guard (LoginGuard) --------------------------------------------------------------
LOGIN_MAX_FAILURES = 5  # failed logins of one name ...
LOGIN_WINDOW = 60.0  # ... within this many seconds ...
LOGIN_LOCKOUT = 300.0  # ... lock that name for this long
LOGIN_HOST_MAX_FAILURES = 20  # failed logins from one client address (any names) ...
LOGIN_HOST_LOCKOUT = 300.0  # ... within LOGIN_WINDOW lock logins from that address this long
#: accounts registered from one client host (client.host_key) within REGISTER_WINDOW seconds:
#: Register is throttled per connection by the engine, but one host may open many connections,
#: and each account may create channels
REGISTER_HOST_MAX = int(os.environ.get("CHATROOM_REGISTER_HOST_MAX", "10"))
REGISTER_WINDOW = 3600.0
#: hosts not counted: this machine's own tools (bots, benchmarks), and a reverse proxy on the
#: same machine, behind which every client has the proxy's address and no per-host count means
#: anything
REGISTER_HOST_EXEMPT = ("127.0.0.1", "::1")
#: an Account waits this long for LoginGuard's answer, then goes on without it (logged): the
#: guard's game may be stalled, or dead (a live game re-creates the shard only after the
#: game's service_failover_timeout, 30 s)
GUARD_TIMEOUT = 3.0

#: a Channel saves itself this long after a change (goworld stop saves everything anyway)
SAVE_DELAY = 2.0

#: joins the channel directory keeps while it loads (after a restart), then answers
JOINS_WAITING_MAX = 1000

#: entries of one channel's ban, timeout, invitation and operator lists (saved with it); a list
#: that is full refuses more (expired bans and timeouts are dropped first)
CHANNEL_LIST_MAX = int(os.environ.get("CHATROOM_CHANNEL_LIST_MAX", "500"))
#: channels that may exist at once (each is a saved entity and a KVDB key)
CHANNELS_TOTAL_MAX = int(os.environ.get("CHATROOM_CHANNELS_TOTAL_MAX", "10000"))
