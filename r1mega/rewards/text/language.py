"""Word-level language identification for the language-consistency reward (stdlib only).

R1 adds "the proportion of target-language words in the CoT" to the reward to stop the model
mixing languages. This module counts words by language in three steps:

1. **Strip what is not prose**: fenced and inline code, LaTeX (``$...$``, ``$$...$$``,
   ``\\(...\\)``, ``\\[...\\]`` and bare ``\\commands``), URLs, XML-ish tags and every digit.
2. **Split into words by Unicode script**: a word is a maximal run of letters (plus combining
   marks) of one script. Scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao,
   Khmer, Myanmar) count one word per character, so a Chinese sentence weighs about as much as
   its English translation. Single Latin/Greek letters are skipped: in reasoning they are
   almost always variables (``x``, ``n``, ``\\alpha`` leftovers).
3. **Assign a language**: the script decides for most languages (Cyrillic -> ru, Hangul -> ko,
   Hiragana/Katakana -> ja, ...). Latin script is shared, so each sentence of Latin words gets
   a language from stopword and diacritic cues (en, fr, de, es, it, pt, nl). A sentence without
   enough cues is ``latin-unknown``.

Limits (by design of a tiny heuristic, documented in docs/rewards.md): Latin-script languages
outside the cue table (Vietnamese, Turkish, Polish, ...) are only recognised as "Latin"; very
short Latin sentences and code-switching *within* a sentence are not resolved (unknown Latin
counts as the target when the target is a Latin-script language); Han characters count for
both Chinese and Japanese; ``zh`` cannot tell Simplified from Traditional.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter

# (first code point, last code point, script), sorted by first code point.
_RANGES = sorted([
    (0x0041, 0x005A, "Latin"), (0x0061, 0x007A, "Latin"), (0x00AA, 0x00AA, "Latin"),
    (0x00BA, 0x00BA, "Latin"), (0x00C0, 0x00D6, "Latin"), (0x00D8, 0x00F6, "Latin"),
    (0x00F8, 0x024F, "Latin"), (0x0250, 0x02AF, "Latin"), (0x1E00, 0x1EFF, "Latin"),
    (0x2C60, 0x2C7F, "Latin"), (0xA720, 0xA7FF, "Latin"), (0xFF21, 0xFF3A, "Latin"),
    (0xFF41, 0xFF5A, "Latin"),
    (0x0370, 0x03FF, "Greek"), (0x1F00, 0x1FFF, "Greek"),
    (0x0400, 0x052F, "Cyrillic"), (0x1C80, 0x1C8F, "Cyrillic"), (0x2DE0, 0x2DFF, "Cyrillic"),
    (0xA640, 0xA69F, "Cyrillic"),
    (0x0530, 0x058F, "Armenian"), (0x0590, 0x05FF, "Hebrew"),
    (0x0600, 0x06FF, "Arabic"), (0x0750, 0x077F, "Arabic"), (0x08A0, 0x08FF, "Arabic"),
    (0xFB50, 0xFDFF, "Arabic"), (0xFE70, 0xFEFF, "Arabic"),
    (0x0900, 0x097F, "Devanagari"), (0x0980, 0x09FF, "Bengali"), (0x0A00, 0x0A7F, "Gurmukhi"),
    (0x0A80, 0x0AFF, "Gujarati"), (0x0B00, 0x0B7F, "Oriya"), (0x0B80, 0x0BFF, "Tamil"),
    (0x0C00, 0x0C7F, "Telugu"), (0x0C80, 0x0CFF, "Kannada"), (0x0D00, 0x0D7F, "Malayalam"),
    (0x0D80, 0x0DFF, "Sinhala"), (0x0E00, 0x0E7F, "Thai"), (0x0E80, 0x0EFF, "Lao"),
    (0x0F00, 0x0FFF, "Tibetan"), (0x1000, 0x109F, "Myanmar"), (0x10A0, 0x10FF, "Georgian"),
    (0x1100, 0x11FF, "Hangul"), (0x1200, 0x139F, "Ethiopic"), (0x1780, 0x17FF, "Khmer"),
    (0x3040, 0x309F, "Hiragana"), (0x30A0, 0x30FF, "Katakana"), (0x31F0, 0x31FF, "Katakana"),
    (0xFF66, 0xFF9F, "Katakana"), (0x3130, 0x318F, "Hangul"), (0xAC00, 0xD7AF, "Hangul"),
    (0x3400, 0x4DBF, "Han"), (0x4E00, 0x9FFF, "Han"), (0xF900, 0xFAFF, "Han"),
    (0x20000, 0x2FA1F, "Han"),
])
_STARTS = [r[0] for r in _RANGES]
CHAR_WORD_SCRIPTS = frozenset({"Han", "Hiragana", "Katakana", "Thai", "Lao", "Khmer", "Myanmar"})

# Target language -> scripts whose words count as that language.
SCRIPT_LANGUAGES: dict[str, frozenset[str]] = {
    "zh": frozenset({"Han"}), "ja": frozenset({"Han", "Hiragana", "Katakana"}),
    "ko": frozenset({"Hangul"}), "ru": frozenset({"Cyrillic"}), "uk": frozenset({"Cyrillic"}),
    "bg": frozenset({"Cyrillic"}), "el": frozenset({"Greek"}), "he": frozenset({"Hebrew"}),
    "ar": frozenset({"Arabic"}), "fa": frozenset({"Arabic"}), "hi": frozenset({"Devanagari"}),
    "bn": frozenset({"Bengali"}), "ta": frozenset({"Tamil"}), "th": frozenset({"Thai"}),
    "ka": frozenset({"Georgian"}), "hy": frozenset({"Armenian"}),
}

# Latin-script languages told apart by cues: frequent function words + characteristic letters.
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and of to is in that it for with as was on be are this by we not "
                    "or have from but which so if then there can let now since because "
                    "need should would what when how".split()),
    "fr": frozenset("le la les et est des une un du que qui dans pour pas sur au avec ce "
                    "il elle nous donc mais ou sont cette aux par plus être fait on".split()),
    "de": frozenset("der die das und ist nicht ein eine zu den von mit sich des auf für "
                    "im dem wir es auch wenn dann also oder aber sind wird nach".split()),
    "es": frozenset("el la los las y es de que en un una por con para no se del al lo "
                    "como pero más entonces tenemos porque son este esta".split()),
    "it": frozenset("il la di che è e un una per non con del della sono questo quindi "
                    "abbiamo anche ma gli le dei allora come".split()),
    "pt": frozenset("o a os as e é de que em um uma para com não do da dos das por mas "
                    "então temos como isso este esta".split()),
    "nl": frozenset("de het een en is van dat in op te niet met voor zijn ook maar dan "
                    "wij we dus als er aan".split()),
}
_LETTER_CUES: dict[str, str] = {
    "fr": "çèêëîïôœûùÿ«»", "de": "äöüß", "es": "ñ¿¡", "it": "ìò", "pt": "ãõ",
}
LATIN_LANGUAGES = frozenset(_STOPWORDS)

# Delimited spans removed before counting words, paired left to right in one pass.
_DELIMITERS = re.compile(r"```|\$\$|\\\[|\\\]|\\\(|\\\)|\$|`")
_CLOSER = {"```": "```", "$$": "$$", "\\[": "\\]", "\\(": "\\)", "$": "$", "`": "`"}
_STRIP_PATTERNS = [
    re.compile(r"\\[A-Za-z]+"),
    re.compile(r"https?://\S+"),
    re.compile(r"</?[A-Za-z][^<>\n]{0,40}>"),
]
# A word: letters plus combining marks (Indic vowel signs are marks, not letters).
_WORD = re.compile(r"(?:[^\W\d_]|[\u0300-\u036F\u0483-\u0489\u0591-\u05C7\u0610-\u061A"
                   r"\u064B-\u065F\u0900-\u0DFF\u0E31-\u0E4E\u0EB1-\u0ECD\u1000-\u109F])+")
_SENTENCE_END = re.compile(r"[.!?;:。！？\n]+")


def script_of(ch: str) -> str:
    """The Unicode script of one character (``Other`` for marks and unknown letters)."""
    cp = ord(ch)
    i = bisect.bisect_right(_STARTS, cp) - 1
    if i >= 0 and _RANGES[i][0] <= cp <= _RANGES[i][1]:
        return _RANGES[i][2]
    if unicodedata.category(ch).startswith("M"):
        return "Mark"
    return "Other"


def _remove_delimited(text: str) -> str:
    """Drop code and maths spans; linear, since each delimiter is looked at once.

    An unclosed code fence swallows the rest of the text; any other unclosed opener is dropped
    and the text after it kept.
    """
    pieces, pos, opener, open_end = [], 0, None, 0
    for m in _DELIMITERS.finditer(text):
        token = m.group()
        if opener is None:
            if token in _CLOSER:
                pieces.append(text[pos:m.start()])
                opener, open_end = token, m.end()
        elif token == _CLOSER[opener]:
            pieces.append(" ")
            opener, pos = None, m.end()
    if opener is None:
        pieces.append(text[pos:])
    elif opener != "```":
        pieces.append(text[open_end:])
    return "".join(pieces)


def strip_non_prose(text: str) -> str:
    """Remove code, LaTeX, URLs and tags (see module docstring); digits go with the tokenizer."""
    text = _remove_delimited(text)
    for pattern in _STRIP_PATTERNS:
        text = pattern.sub(" ", text)
    return text


def script_words(token: str) -> list[tuple[str, str]]:
    """Split one letter run into ``(script, word)`` pieces; char-level for spaceless scripts."""
    words: list[tuple[str, str]] = []
    current, buf = None, []
    for ch in token:
        script = script_of(ch)
        if script == "Mark" and current is not None:
            buf.append(ch)
            continue
        if script != current or script in CHAR_WORD_SCRIPTS:
            if buf:
                words.append((current, "".join(buf)))
            current, buf = script, []
        buf.append(ch)
    if buf:
        words.append((current, "".join(buf)))
    return [(s, w) for s, w in words if not (s in ("Latin", "Greek") and len(w) == 1)]


def latin_language(words: list[str]) -> str:
    """Guess the language of a sentence of Latin words from stopwords and letter cues."""
    scores: Counter[str] = Counter()
    for word in words:
        lower = word.lower()
        for lang, stops in _STOPWORDS.items():
            if lower in stops:
                scores[lang] += 1
        for lang, letters in _LETTER_CUES.items():
            if any(ch in letters for ch in lower):
                scores[lang] += 2
    if not scores:
        return "latin-unknown"
    (best, top), *rest = scores.most_common(2) + [("", 0)]
    runner_up = rest[0][1]
    if top >= 2 and top > runner_up:
        return best
    return "latin-unknown"


def word_languages(text: str) -> Counter[str]:
    """Count the words of ``text`` per language (a language code, a script name or ``*-unknown``)."""
    counts: Counter[str] = Counter()
    for sentence in _SENTENCE_END.split(strip_non_prose(text)):
        latin: list[str] = []
        for token in _WORD.findall(sentence):
            for script, word in script_words(token):
                if script == "Latin":
                    latin.append(word)
                else:
                    counts[script] += 1
        if latin:
            counts[latin_language(latin)] += len(latin)
    return counts


def target_fraction(text: str, target: str) -> tuple[float, int]:
    """Proportion of ``text``'s words in language ``target``, and the word count."""
    counts = word_languages(text)
    total = sum(counts.values())
    if total == 0:
        return 0.0, 0
    if target in LATIN_LANGUAGES:
        hits = counts[target] + counts["latin-unknown"]
    else:
        scripts = SCRIPT_LANGUAGES[target]
        hits = sum(counts[s] for s in scripts)
    return hits / total, total
