"""Text to sentences, with ``sentence-stream`` (the library Home Assistant's own TTS uses).

Sentence boundaries come from ``sentence-stream``; a piece longer than the engine's input
limit is split at sentence, then word boundaries.

``sentence-stream`` confirms a sentence only when the next chunk starts another one (it
needs the following capital letter), so the first sentence of a streamed reply would wait
for the next text chunk. :meth:`SentenceSplitter.pending_sentence` names the text a chunk
left that already ends like a sentence; the caller starts it at once and, if the next
chunk continues it, withdraws it (or, when its audio is already playing, drops its text
from what follows with :meth:`SentenceSplitter.drop_prefix`).

That needs what ``sentence-stream`` 1.3 keeps outside its public API (``__all__``): the
text a :class:`SentenceBoundaryDetector` holds back (its ``current_sentence`` and
``remaining_text`` attributes), its abbreviation pattern and its markdown-emphasis
filter. Those uses are the four functions below and nowhere else;
``tests/test_sentences.py`` fails when the library changes them.
"""

from __future__ import annotations

import re

from sentence_stream import SentenceBoundaryDetector, stream_to_sentences
from sentence_stream.sentence_stream import ABBREVIATION_RE
from sentence_stream.util import remove_asterisks


def held_text(detector: SentenceBoundaryDetector) -> str:
    """The text ``detector`` holds back for the next chunk (not yet a confirmed sentence)."""
    return detector.current_sentence + detector.remaining_text


def set_held_text(detector: SentenceBoundaryDetector, text: str) -> None:
    """Replace what ``detector`` holds back with ``text``."""
    detector.current_sentence = ""
    detector.remaining_text = text


def may_be_abbreviation(text: str) -> bool:
    """Whether the last word of ``text`` is one ``sentence-stream`` takes for a possible
    abbreviation ("Dr.", "Mr."), so it would not end a sentence there."""
    return bool(ABBREVIATION_RE.search(text[-5:]))


def has_markdown_emphasis(text: str) -> bool:
    """Whether ``text`` has markdown emphasis ``sentence-stream`` would remove."""
    return remove_asterisks(text) != text


def split_long(text: str, max_chars: int) -> list[str]:
    """Cut one sentence longer than ``max_chars`` at word boundaries (hard cut if none)."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > max_chars:
        cut = rest.rfind(" ", 0, max_chars + 1)
        if cut <= 0:
            cut = max_chars
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def split_text(text: str, max_chars: int) -> list[str]:
    """Whole sentences grouped into pieces of at most ``max_chars`` characters.

    Text within the limit stays one piece (one request keeps its prosody whole).
    """
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    pieces: list[str] = []
    current = ""
    for sentence in stream_to_sentences([text]):
        for part in split_long(sentence, max_chars):
            if current and len(current) + 1 + len(part) > max_chars:
                pieces.append(current)
                current = part
            else:
                current = f"{current} {part}" if current else part
    if current:
        pieces.append(current)
    return pieces


_SENTENCE_END_RE = re.compile(r"(?:[.!?…]|[؟]|[।॥])+['\"\)\]\}\u2019\u201d»]*$")
"""Text ending like a sentence: ``sentence-stream``'s enders and closers
(``SENTENCE_END``, ``ASCII_CLOSERS``) at the very end."""


CLAUSE_MIN_WORDS = 3
"""Words a first clause needs to be spoken apart from the rest of its sentence."""

_CLAUSE_END_RE = re.compile(r"[,;:\u2014\u2013]\s")
"""A clause ends at a comma, semicolon, colon or dash followed by a space (``1,000`` is
not a clause end)."""

_INNER_SENTENCE_END_RE = re.compile(r"[.!?\u2026]\s")


def first_clause(text: str, rest_min_words: int) -> tuple[str, str] | None:
    """``text`` cut after the first clause of its first sentence, when the clause has at
    least :data:`CLAUSE_MIN_WORDS` words and the rest of that sentence at least
    ``rest_min_words``; else None.

    Returns:
        the clause (with its punctuation) and the rest of the text, both stripped.
    """
    sentence_end = _INNER_SENTENCE_END_RE.search(text)
    sentence = text[: sentence_end.start() + 1] if sentence_end else text
    for mark in _CLAUSE_END_RE.finditer(sentence):
        clause = text[: mark.start() + 1].strip()
        if len(clause.split()) < CLAUSE_MIN_WORDS:
            continue
        if len(sentence[mark.end() :].split()) < rest_min_words:
            return None
        return clause, text[mark.end() :].strip()
    return None


PHRASE_MAX_WORDS = 6
"""Most words of a first phrase cut at a word boundary (:func:`first_phrase`): about a
second of speech, short enough for a local voice to make it quickly, long enough to cover
the making of the rest of its sentence."""

PHRASE_REST_MIN_WORDS = 3
"""Words the rest of a known sentence needs for its first phrase to be spoken apart: a
short rest costs a seam in the speech for little time saved."""

PHRASE_SENTENCE_MIN_WORDS = 8
"""Fewest words (known so far) of a sentence cut at a word boundary: a shorter one is made
about as fast as its first phrase would be."""

PHRASE_STARTS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "and but or nor so yet because while when whereas if unless until after before "  # noqa: SIM905
        "since though although which who whose where with without in on at for from into "
        "onto to by about during through over under between than".split()
    ),
}
"""Per language (the ISO 639-1 code a voice's language starts with), words a new phrase
starts with (conjunctions, relative pronouns, prepositions): a sentence cut before one of
them keeps the intonation of a phrase break. Languages without an entry are cut after
:data:`PHRASE_MAX_WORDS` words."""


def first_phrase(text: str, rest_min_words: int, language: str | None) -> tuple[str, str] | None:
    """``text`` cut after the first clause of its first sentence (:func:`first_clause`), or,
    when that sentence has none, at a word boundary: before the last word of
    :data:`PHRASE_STARTS` (for ``language``, e.g. ``en_US``) that leaves a first phrase of
    :data:`CLAUSE_MIN_WORDS` to :data:`PHRASE_MAX_WORDS` words, else after
    :data:`PHRASE_MAX_WORDS` words. None when that sentence has fewer than
    :data:`PHRASE_SENTENCE_MIN_WORDS` words or its rest would have fewer than
    ``rest_min_words``.

    Returns:
        the first phrase (unpunctuated when cut at a word boundary) and the rest of the
        text, both stripped.
    """
    clause = first_clause(text, rest_min_words)
    if clause is not None:
        return clause
    sentence_end = _INNER_SENTENCE_END_RE.search(text)
    sentence = text[: sentence_end.start() + 1] if sentence_end else text
    words = list(re.finditer(r"\S+", sentence))
    if len(words) < max(PHRASE_SENTENCE_MIN_WORDS, CLAUSE_MIN_WORDS + rest_min_words):
        return None
    starts = PHRASE_STARTS.get((language or "").split("_")[0].split("-")[0].lower(), frozenset())
    cut = min(PHRASE_MAX_WORDS, len(words) - rest_min_words)
    for index in range(cut, CLAUSE_MIN_WORDS - 1, -1):
        if words[index].group().lower().strip("\"'()") in starts:
            cut = index
            break
    if not words[cut - 1].group()[-1].isalnum():
        return None  # a word ending in a mark (a quote, a bracket): no clean cut
    return text[: words[cut - 1].end()].strip(), text[words[cut].start() :].strip()


class SentenceSplitter:
    """Streaming text (``synthesize-chunk`` deltas) -> complete sentences, in order."""

    def __init__(self, max_chars: int) -> None:
        self._detector = SentenceBoundaryDetector()
        self._max_chars = max_chars

    def pending_sentence(self) -> str | None:
        """The text held back for the next chunk, if it already looks like a whole
        sentence: it ends with sentence punctuation, its last word is not one
        ``sentence-stream`` takes for a possible abbreviation ("Dr.", "Mr."), it has no
        markdown emphasis, and it fits one request. ``None`` otherwise.
        """
        text = held_text(self._detector).strip()
        if (
            not text
            or len(text) > self._max_chars
            or not _SENTENCE_END_RE.search(text)
            or may_be_abbreviation(text)
            or has_markdown_emphasis(text)
        ):
            return None
        return text

    def pending_clause(self) -> str | None:
        """The first clause of the held-back text (:func:`first_clause`), once the word
        after it has begun; ``None`` otherwise."""
        found = first_clause(held_text(self._detector).lstrip(), 1)
        return found[0] if found is not None and len(found[0]) <= self._max_chars else None

    def pending_phrase(self, language: str | None) -> str | None:
        """The first phrase of the held-back text (:func:`first_phrase` in ``language``):
        a first clause once the word after it has begun, a phrase cut at a word boundary
        once two words follow it (so the word after the cut is whole) and it has no markdown
        emphasis; ``None`` otherwise.
        """
        if (clause := self.pending_clause()) is not None:
            return clause
        found = first_phrase(held_text(self._detector).lstrip(), 2, language)
        if found is None or len(found[0]) > self._max_chars or has_markdown_emphasis(found[0]):
            return None  # emphasis is for ``sentence-stream`` to remove from whole sentences
        return found[0]

    def drop_prefix(self, text: str) -> bool:
        """Forget ``text`` (a :meth:`pending_sentence` already spoken) from the start of
        the held-back text; False if that text no longer starts with it."""
        raw = held_text(self._detector).lstrip()
        if not raw.startswith(text):
            return False
        set_held_text(self._detector, raw[len(text) :])
        return True

    def add(self, chunk: str) -> list[str]:
        """Sentences completed by ``chunk``."""
        return [
            part
            for sentence in self._detector.add_chunk(chunk)
            for part in split_long(sentence, self._max_chars)
        ]

    def finish(self) -> list[str]:
        """Whatever text is left at the end of the stream."""
        return split_long(self._detector.finish(), self._max_chars)
