"""The fidelity guard: did the conversational realtime model say the text verbatim?

The model's own transcript of its audio (``response.output_audio_transcript.done``) is
compared with the text it was given; a word error rate above ``tts.realtime_max_wer`` is
logged as a warning with both texts.
"""

from __future__ import annotations

import logging
import re
import unicodedata

import jiwer

_LOGGER = logging.getLogger(__name__)

_APOSTROPHES = re.compile(r"['\u2019\u2018`]")


def normalize_words(text: str) -> list[str]:
    """Words of ``text`` for comparison: NFKC, case-folded, without apostrophes; every other
    punctuation or symbol character separates words (``"Don't-stop!"`` -> ``["dont", "stop"]``).
    """
    text = _APOSTROPHES.sub("", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return text.split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` on normalised words:
    (substitutions + deletions + insertions) / reference words, computed by ``jiwer``.

    0.0 when both are empty; 1.0 when only the reference is empty.
    """
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(" ".join(ref), " ".join(hyp) if hyp else ""))


def check_fidelity(text: str, spoken: str, max_wer: float) -> float:
    """Log a warning with both texts when ``spoken`` differs from ``text`` by more than
    ``max_wer`` (word error rate, 0 to 1). Returns the word error rate."""
    rate = word_error_rate(text, spoken)
    if rate > max_wer:
        _LOGGER.warning(
            "The realtime model did not say the text verbatim (word error rate %.0f%% > "
            "%.0f%%): asked to say %r, said %r",
            rate * 100,
            max_wer * 100,
            text,
            spoken,
        )
    return rate
