"""PublishSubscribeService: subjects in a trie; a subscription ending with ``*`` matches every
subject that starts with what precedes the ``*``."""

import logging

import goworld

logger = logging.getLogger("goworld.test_game")


class _Node:
    __slots__ = ("children", "exact", "wildcard")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.exact: set[str] = set()  # subscribers of exactly this subject
        self.wildcard: set[str] = set()  # subscribers of this prefix + "*"


class SubjectTrie:
    """One node per character of the subjects subscribed to."""

    def __init__(self) -> None:
        self.root = _Node()

    def _node(self, subject: str, create: bool) -> _Node | None:
        node = self.root
        for ch in subject:
            child = node.children.get(ch)
            if child is None:
                if not create:
                    return None
                child = node.children[ch] = _Node()
            node = child
        return node

    def add(self, subject: str, wildcard: bool, subscriber: str) -> None:
        node = self._node(subject, True)
        assert node is not None
        (node.wildcard if wildcard else node.exact).add(subscriber)

    def remove(self, subject: str, wildcard: bool, subscriber: str) -> None:
        node = self._node(subject, False)
        if node is not None:
            (node.wildcard if wildcard else node.exact).discard(subscriber)

    def match(self, subject: str) -> set[str]:
        """Every subscriber of ``subject``: exact ones and those of each prefix + ``*``."""
        found: set[str] = set()
        node: _Node | None = self.root
        for ch in subject:
            found |= node.wildcard
            node = node.children.get(ch)
            if node is None:
                return found
        return found | node.wildcard | node.exact


def _split(subject: str) -> tuple[str, bool] | None:
    """``("boss_", True)`` for ``"boss_*"``; None when a ``*`` is not at the end."""
    if "*" in subject[:-1]:
        return None
    if subject.endswith("*"):
        return subject[:-1], True
    return subject, False


class PublishSubscribeService(goworld.Entity):
    def on_init(self) -> None:
        self.trie = SubjectTrie()
        self.subscriptions: dict[str, set[tuple[str, bool]]] = {}  # subscriber -> its subjects

    @goworld.rpc(name="Subscribe")
    def subscribe(self, subscriber: str, subject: str) -> None:
        parsed = _split(subject)
        if parsed is None:
            logger.error("%r.Subscribe(%s): '*' may only end a subject", self, subject)
            return
        self.trie.add(parsed[0], parsed[1], subscriber)
        self.subscriptions.setdefault(subscriber, set()).add(parsed)

    @goworld.rpc(name="Unsubscribe")
    def unsubscribe(self, subscriber: str, subject: str) -> None:
        parsed = _split(subject)
        if parsed is None:
            logger.error("%r.Unsubscribe(%s): '*' may only end a subject", self, subject)
            return
        self.trie.remove(parsed[0], parsed[1], subscriber)
        subs = self.subscriptions.get(subscriber)
        if subs is not None:
            subs.discard(parsed)
            if not subs:
                del self.subscriptions[subscriber]

    @goworld.rpc(name="UnsubscribeAll")
    def unsubscribe_all(self, subscriber: str) -> None:
        for subject, wildcard in self.subscriptions.pop(subscriber, ()):
            self.trie.remove(subject, wildcard, subscriber)

    @goworld.rpc(name="Publish")
    def publish(self, subject: str, content: str) -> None:
        if "*" in subject:
            logger.error("%r.Publish(%s): a published subject has no '*'", self, subject)
            return
        for subscriber in self.trie.match(subject):
            self.call(subscriber, "OnPublish", subject, content)
