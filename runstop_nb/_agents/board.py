"""The card board: the newest cards of a stream, and the uncut texts of a few of them.

A card is put by id. Putting an id the board holds replaces that card where it stands
(a tool call's card turns from running to ok in place); a new id goes to the end, and the
oldest card leaves once there are more than ``max_cards``.

Cards carry cut texts only. The uncut body (and detail) of a card whose text was cut is
kept apart so a UI can offer "show all", within ``FULL_TEXT_CHARS`` characters in all:
the oldest uncut texts are evicted first, a text larger than the whole budget is never
kept, and a card's uncut texts leave with the card.
"""

from __future__ import annotations

from collections import OrderedDict

from .excerpt import cut, first_line
from .summary import BODY_CHARS, DETAIL_CHARS, Card, CardKind, CardStatus

FULL_TEXT_CHARS = 1_000_000  # uncut bodies and details kept for "show all", in characters
_DETAIL = "\x00detail"  # key suffix of an uncut detail in the store


class TextRun:
    """Text that grows by pieces (streamed deltas, lines), at O(1) cost per piece.

    The head (what a card shows) is kept ready; the whole text is joined only when asked
    for. Beyond ``limit`` characters pieces are only counted, and the text is incomplete.
    """

    __slots__ = ("_parts", "head", "limit", "size")

    def __init__(self, limit: int = FULL_TEXT_CHARS) -> None:
        self._parts: list[str] = []
        self.head = ""  # the first BODY_CHARS + 1 characters
        self.size = 0  # characters added in all
        self.limit = limit

    def add(self, piece: str) -> None:
        """Append ``piece``."""
        kept = self.limit - (self.size if self.size < self.limit else self.limit)
        if kept > 0:
            self._parts.append(piece if len(piece) <= kept else piece[:kept])
        if len(self.head) <= BODY_CHARS:
            self.head += piece[: BODY_CHARS + 1 - len(self.head)]
        self.size += len(piece)

    @property
    def complete(self) -> bool:
        """True if every piece was kept."""
        return self.size <= self.limit

    def text(self) -> str:
        """Return the text kept (all of it if ``complete``)."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""


class CardBoard:
    """The bounded, ordered set of cards of one stream. Not thread-safe: the reader locks."""

    def __init__(self, max_cards: int = 200, full_text_chars: int = FULL_TEXT_CHARS) -> None:
        self.max_cards = max(int(max_cards), 1)
        self.version = 0  # grows on every put
        self.last_id: str | None = None  # the id of the card put last
        self._cards: OrderedDict[str, Card] = OrderedDict()
        self._full: OrderedDict[str, tuple[str | TextRun, int]] = OrderedDict()  # key -> (text, size)
        self._full_budget = full_text_chars
        self._full_size = 0
        self._serial = 0

    def new_id(self, prefix: str) -> str:
        """Return an id no other card of this board has had, such as ``raw-12``."""
        self._serial += 1
        return f"{prefix}-{self._serial}"

    def put(
        self,
        card_id: str,
        kind: CardKind,
        title: str,
        body: str,
        status: CardStatus,
        *,
        summary: str | None = None,
        detail: str = "",
    ) -> Card:
        """Make or replace the card ``card_id`` from uncut texts; return the card as stored.

        ``summary`` defaults to the first line of ``body``.
        """
        card = Card(
            id=card_id,
            kind=kind,
            title=cut(title, 120),
            summary=first_line(body) if summary is None else first_line(summary),
            body=cut(body, BODY_CHARS),
            full_chars=len(body),
            status=status,
            detail=cut(detail, DETAIL_CHARS),
        )
        self._keep_full(card_id, body, len(card.body) < len(body))
        self._keep_full(card_id + _DETAIL, detail, len(card.detail) < len(detail))
        self._store(card)
        return card

    def put_run(self, card_id: str, kind: CardKind, title: str, run: TextRun, status: CardStatus) -> Card:
        """Make or replace the card ``card_id`` whose body is the growing text ``run``."""
        card = Card(
            id=card_id,
            kind=kind,
            title=cut(title, 120),
            summary=first_line(run.head),
            body=cut(run.head, BODY_CHARS) if run.size > BODY_CHARS else run.head,
            full_chars=run.size,
            status=status,
        )
        if run.size > BODY_CHARS:
            self._drop_full(card_id)
            if run.complete and run.size <= self._full_budget:
                self._add_full(card_id, run, run.size)
        self._store(card)
        return card

    def restyle(
        self,
        card_id: str,
        *,
        status: CardStatus | None = None,
        title: str | None = None,
        summary: str | None = None,
        detail: str | None = None,
    ) -> Card | None:
        """Change some fields of a held card but its body; return it, or None if not held."""
        old = self._cards.get(card_id)
        if old is None:
            return None
        if detail is not None:
            self._keep_full(card_id + _DETAIL, detail, len(detail) > DETAIL_CHARS)
        card = Card(
            id=card_id,
            kind=old.kind,
            title=old.title if title is None else cut(title, 120),
            summary=old.summary if summary is None else first_line(summary),
            body=old.body,
            full_chars=old.full_chars,
            status=old.status if status is None else status,
            detail=old.detail if detail is None else cut(detail, DETAIL_CHARS),
        )
        self._store(card)
        return card

    def get(self, card_id: str) -> Card | None:
        """Return the held card ``card_id``, or None."""
        return self._cards.get(card_id)

    def cards(self) -> list[Card]:
        """Return the held cards, oldest first."""
        return list(self._cards.values())

    def full_body(self, card_id: str) -> str | None:
        """Return the uncut body of a held card, or None if the card or its text is gone."""
        card = self._cards.get(card_id)
        if card is None:
            return None
        if card.full_chars == len(card.body):
            return card.body
        return self._full_text(card_id)

    def full_detail(self, card_id: str) -> str | None:
        """Return the uncut detail of a held card, or None if the card or its text is gone."""
        card = self._cards.get(card_id)
        if card is None:
            return None
        full = self._full_text(card_id + _DETAIL)
        return card.detail if full is None else full

    def _store(self, card: Card) -> None:
        self._cards[card.id] = card
        self.last_id = card.id
        self.version += 1
        while len(self._cards) > self.max_cards:
            gone, _ = self._cards.popitem(last=False)
            self._drop_full(gone)
            self._drop_full(gone + _DETAIL)

    def _keep_full(self, key: str, text: str, was_cut: bool) -> None:
        if key in self._full:
            self._drop_full(key)
        if not was_cut or len(text) > self._full_budget:
            return
        self._add_full(key, text, len(text))

    def _add_full(self, key: str, text: str | TextRun, size: int) -> None:
        self._full[key] = (text, size)
        self._full_size += size
        while self._full_size > self._full_budget:
            _, (_, old) = self._full.popitem(last=False)
            self._full_size -= old

    def _drop_full(self, key: str) -> None:
        old = self._full.pop(key, None)
        if old is not None:
            self._full_size -= old[1]

    def _full_text(self, key: str) -> str | None:
        held = self._full.get(key)
        if held is None:
            return None
        return held[0].text() if isinstance(held[0], TextRun) else held[0]
