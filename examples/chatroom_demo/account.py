"""The boot entity of every client: registration and login.

Login asks LoginGuard first (a name, or a client address, locked after too many failures is
refused with how long to wait) and tells it about each failure and success. If the guard does not answer within
``GUARD_TIMEOUT`` (its game stalled, or dead: a service shard moves to a live game only after
``service_failover_timeout``, 30 s), the
login goes on without it, logged: the engine's per-connection limit on Login still holds.
"""

from __future__ import annotations

import logging

import goworld

from . import rules, settings

logger = logging.getLogger("chatroom")


class Account(goworld.Entity):
    def on_init(self) -> None:
        self.logging_in = False
        self.guard_seq = 0
        #: the login waiting for LoginGuard: (seq, name, password)
        self.pending: tuple[int, str, str] | None = None
        #: the registration waiting for LoginGuard: (seq, name, password)
        self.pending_register: tuple[int, str, str] | None = None

    # Limits on calls from a client (the game's defaults: 50 calls/s, 64 KiB): a person registers
    # once and logs in a few times; a client refused too often is closed (client_rpc_max_strikes).
    @goworld.rpc(client=True, name="Register", rate=0.2, burst=3, max_arg_bytes=512)
    def register(self, username: str, password: str) -> None:
        if not username or not password:
            self.call_client("ShowError", "user name and password must not be empty")
            return
        err = rules.check_user_name(username) or rules.check_password(password)
        if err:
            self.call_client("ShowError", err)
            return
        if self.pending_register is not None:
            self.call_client("ShowError", "a registration is already in progress")
            return
        self.guard_seq += 1
        self.pending_register = (self.guard_seq, username, password)
        goworld.call_service_any("LoginGuard", "CheckRegister", self.id, self.guard_seq, self._host())
        self.add_callback(settings.GUARD_TIMEOUT, "register_timeout", self.guard_seq)

    @goworld.rpc(name="OnRegisterAnswer")
    def on_register_answer(self, seq: int, wait: float) -> None:
        pending = self.pending_register
        if pending is None or pending[0] != seq:
            return  # answered after the timeout went on without it
        self.pending_register = None
        if wait > 0:
            self.call_client("ShowError", "too many accounts registered from your address: try "
                                          f"again in {rules.format_wait_whole(wait)}")
            return
        self._register(pending[1], pending[2])

    def register_timeout(self, seq: int) -> None:
        pending = self.pending_register
        if pending is None or pending[0] != seq:
            return
        self.pending_register = None
        logger.warning("LoginGuard did not answer within %.1f s: registration of %r goes on without it",
                       settings.GUARD_TIMEOUT, pending[1])
        self._register(pending[1], pending[2])

    def _register(self, username: str, password: str) -> None:
        def got_password(old: str | None, err: Exception | None) -> None:
            if err is not None:
                self.call_client("ShowError", "server error, please try again later")
                return
            if old is not None:
                self.call_client("ShowError", "this account already exists")
                return
            avatar = goworld.create_entity_locally("Avatar", {"name": username})
            avatar_id = avatar.id
            avatar.destroy()  # saves it
            goworld.kvdb_put(f"avatarID${username}", avatar_id)
            self.call_client("ShowInfo", "registered: you can log in now")

        goworld.kvdb_get_or_put(f"password${username}", password, got_password)

    @goworld.rpc(client=True, name="Login", rate=1, burst=5, max_arg_bytes=512)
    def login(self, username: str, password: str) -> None:
        if self.logging_in:
            self.call_client("ShowError", "a login is already in progress")
            return
        if not username or not password:
            self.call_client("ShowError", "user name and password must not be empty")
            return
        err = rules.check_user_name(username)
        if err:
            self.call_client("ShowError", err)
            return
        self.logging_in = True
        self.guard_seq += 1
        self.pending = (self.guard_seq, username, password)
        goworld.call_service_any("LoginGuard", "Check", self.id, self.guard_seq, username, self._host())
        self.add_callback(settings.GUARD_TIMEOUT, "guard_timeout", self.guard_seq)

    def _host(self) -> str:
        """Where this connection comes from (the gate's view of the client's address)."""
        return self.client.host_key if self.client is not None else ""

    @goworld.rpc(name="OnGuardAnswer")
    def on_guard_answer(self, seq: int, wait: float, scope: str = "name") -> None:
        pending = self.pending
        if pending is None or pending[0] != seq:
            return  # answered after the timeout went on without it
        self.pending = None
        _, username, password = pending
        if wait > 0:
            self.logging_in = False
            self.call_client("ShowError", _locked_text(username, wait, scope))
            return
        self._check_password(username, password)

    def guard_timeout(self, seq: int) -> None:
        pending = self.pending
        if pending is None or pending[0] != seq:
            return
        self.pending = None
        logger.warning("LoginGuard did not answer within %.1f s: login of %r goes on without it",
                       settings.GUARD_TIMEOUT, pending[1])
        self._check_password(pending[1], pending[2])

    @goworld.rpc(name="OnLockedOut")
    def on_locked_out(self, username: str, seconds: float, scope: str = "name") -> None:
        self.call_client("ShowError", _locked_text(username, seconds, scope))

    def _check_password(self, username: str, password: str) -> None:
        def failed(text: str) -> None:
            self.logging_in = False
            self.call_client("ShowError", text)
            goworld.call_service_any("LoginGuard", "Failed", self.id, username, self._host())

        def got_password(stored: str | None, err: Exception | None) -> None:
            if err is not None:
                self.logging_in = False
                self.call_client("ShowError", "server error, please try again later")
                return
            if stored is None:
                failed("no such account")
                return
            if stored != password:
                failed("wrong password")
                return
            goworld.call_service_any("LoginGuard", "Succeeded", username)
            goworld.kvdb_get(f"avatarID${username}", got_avatar_id)

        def got_avatar_id(avatar_id: str | None, err: Exception | None) -> None:
            if err is not None or not avatar_id:
                self.logging_in = False
                self.call_client("ShowError", "this account has no avatar")
                return
            goworld.load_entity_anywhere("Avatar", avatar_id)
            self.call(avatar_id, "GetSpaceID", self.id)

        goworld.kvdb_get(f"password${username}", got_password)

    @goworld.rpc(name="OnGetAvatarSpaceID")
    def on_get_avatar_space_id(self, avatar_id: str, space_id: str) -> None:
        avatar = goworld.get_entity(avatar_id)
        if avatar is not None:
            self.give_client_to(avatar)
            return
        self.attrs["loginAvatarID"] = avatar_id
        self.enter_space(space_id)  # migrate to the avatar's game, then hand the client over

    def on_migrate_in(self) -> None:
        avatar_id = self.attrs.get_str("loginAvatarID")
        avatar = goworld.get_entity(avatar_id)
        if avatar is not None:
            self.give_client_to(avatar)
        else:
            self.call_client("ShowError", "login failed, please try again")

    def on_client_disconnected(self) -> None:
        self.destroy()


def _locked_text(username: str, seconds: float, scope: str) -> str:
    whom = "from your address" if scope == "address" else f"for {username}"
    return f"too many failed logins {whom}: try again in {rules.format_wait_whole(seconds)}"
