"""The parts of ``sentence-stream`` outside its public API that ``tts/sentences.py`` uses:
these fail when a new release of the library changes them."""

from __future__ import annotations

from sentence_stream import SentenceBoundaryDetector

from wyoming_openai.tts.sentences import (
    SentenceSplitter,
    has_markdown_emphasis,
    held_text,
    may_be_abbreviation,
    set_held_text,
)


def test_the_detector_holds_back_an_unconfirmed_sentence_and_lets_it_be_replaced() -> None:
    detector = SentenceBoundaryDetector()
    assert list(detector.add_chunk("The door is locked. The ligh")) == ["The door is locked."]
    assert held_text(detector).strip() == "The ligh"
    set_held_text(detector, "Other text")
    assert held_text(detector) == "Other text"
    assert detector.finish().strip() == "Other text"


def test_abbreviations_and_emphasis_are_recognised_as_the_library_does() -> None:
    assert may_be_abbreviation("Call Dr.")
    assert not may_be_abbreviation("It is locked.")
    assert has_markdown_emphasis("It is **very** cold.")
    assert not has_markdown_emphasis("It is very cold.")


def test_a_chunk_ending_a_sentence_is_pending_until_the_next_one_continues_it() -> None:
    splitter = SentenceSplitter(max_chars=4096)
    assert splitter.add("It is 3.") == []
    assert splitter.pending_sentence() == "It is 3."
    assert splitter.drop_prefix("It is 3.")
    assert splitter.add("5 degrees outside. Then") == ["5 degrees outside."]
