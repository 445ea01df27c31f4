"""MailService (one shard): mails kept in KVDB under ``MailService:mail$<receiver>$<%010d id>``,
the last mail id under ``MailService:lastMailID``."""

import json
import logging
from typing import Any

import goworld

logger = logging.getLogger("goworld.test_game")

LAST_MAIL_ID_KEY = "MailService:lastMailID"
END_MAIL_ID = 9999999999


def mail_key(receiver_id: str, mail_id: int) -> str:
    return f"MailService:mail${receiver_id}${mail_id:010d}"


def parse_mail_id(key: str) -> int:
    return int(key.rsplit("$", 1)[1])


class MailService(goworld.Entity):
    def on_init(self) -> None:
        self.last_mail_id: int | None = None  # None until read from KVDB
        self.queued: list[tuple[str, str, str, Any]] = []

    def on_created(self) -> None:
        def got(value: str | None, err: Exception | None) -> None:
            if err is not None:
                logger.error("%r: reading %s failed: %s", self, LAST_MAIL_ID_KEY, err)
            self.last_mail_id = int(value) if value else 0
            queued, self.queued = self.queued, []
            for args in queued:
                self.send_mail(*args)

        goworld.kvdb_get(LAST_MAIL_ID_KEY, got)

    @goworld.rpc(name="SendMail")
    def send_mail(self, sender_id: str, sender_name: str, target_id: str, data: Any) -> None:
        if self.last_mail_id is None:
            self.queued.append((sender_id, sender_name, target_id, data))
            return
        self.last_mail_id += 1
        mail_id = self.last_mail_id
        goworld.kvdb_put(LAST_MAIL_ID_KEY, str(mail_id))
        mail = {"senderID": sender_id, "senderName": sender_name, "targetID": target_id, "data": data}
        try:
            text = json.dumps(mail, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            logger.error("%r: mail from %s cannot be stored: %s", self, sender_id, exc)
            self.call(sender_id, "OnSendMail", False)
            return

        def put(_: None, err: Exception | None) -> None:
            if err is not None:
                logger.error("%r: storing mail %d failed: %s", self, mail_id, err)
                self.call(sender_id, "OnSendMail", False)
                return
            self.call(sender_id, "OnSendMail", True)
            self.call(target_id, "NotifyReceiveMail")

        goworld.kvdb_put(mail_key(target_id, mail_id), text, put)

    @goworld.rpc(name="GetMails")
    def get_mails(self, avatar_id: str, last_mail_id: int) -> None:
        def got(items: list[tuple[str, str]] | None, err: Exception | None) -> None:
            if err is not None:
                logger.error("%r: reading mails of %s failed: %s", self, avatar_id, err)
                return
            mails = [[parse_mail_id(key), value] for key, value in items or ()]
            self.call(avatar_id, "OnGetMails", last_mail_id, mails)

        goworld.kvdb_get_range(mail_key(avatar_id, last_mail_id + 1), mail_key(avatar_id, END_MAIL_ID), got)
