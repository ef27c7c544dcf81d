"""Streamed LLM text made speakable: sentences as tokens arrive, markup removed, length capped.

Pure code (no I/O). The LLM pipeline (docs/llm-pipeline.md) will feed each streamed delta
to a `SentenceSplitter`, pass every sentence it yields through `clean_for_speech`, and say
the non-empty results one by one, so the PAL starts speaking after the first sentence
instead of after the whole answer. `cap_answer` bounds a whole (non-streamed) answer.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterable, AsyncIterator

DEFAULT_MAX_SENTENCE_CHARS = 300
FENCE = "```"

# Words that end with a dot without ending the sentence (compared lower-case, dot excluded).
ABBREVIATIONS = frozenset({
    "e.g", "i.e", "etc", "vs", "cf", "al", "approx", "ca", "resp", "viz",
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "rev", "gen", "col", "lt", "sgt",
    "inc", "ltd", "co", "corp", "dept", "univ", "no", "nos", "fig", "figs", "vol", "pp", "p",
    "ed", "est", "min", "max", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun",
    "a.m", "p.m", "u.s", "u.k", "u.n", "e.u", "ph.d", "b.sc", "m.sc",
})

# A sentence ends at terminators, then optional closing quotes, brackets or emphasis, then whitespace;
# or at a line break (list items and paragraphs are spoken as separate sentences).
_BOUNDARY = re.compile(r"(?P<term>[.!?…]+)[\"'”’)\]*_]*(?=\s)|\n")
_CLAUSE = re.compile(r"[,;:\u2013\u2014](?=\s)")
_WORD_BEFORE_DOT = re.compile(r"(\S+)$")


def _is_abbreviation(text_before_dot: str) -> bool:
    """Whether the word just before a '.' makes that dot part of the word, not an ending."""
    match = _WORD_BEFORE_DOT.search(text_before_dot)
    if not match:
        return False
    word = match.group(1).lstrip("([\"'“‘").lower()
    if word in ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isalpha():  # an initial: "J. Smith"
        return True
    if re.fullmatch(r"(?:[a-z]\.)+[a-z]", word):  # dotted initials: "e.g", "u.s.a"
        return True
    line_start = text_before_dot.rfind("\n") + 1
    # "1." alone at the start of a line numbers a list item.
    return word.isdigit() and text_before_dot[line_start:].strip() == word


def split_long(text: str, max_chars: int) -> list[str]:
    """`text` in pieces of at most `max_chars`, cut at word boundaries where there is one."""
    pieces: list[str] = []
    text = text.strip()
    while len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars + 1)
        if cut <= 0:
            cut = max_chars
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        pieces.append(text)
    return pieces


class SentenceSplitter:
    """Fed streamed text token by token; returns each sentence as soon as it is complete.

    A sentence is complete when its terminator is followed by whitespace (so "3.5" and
    "e.g. this" never split, and a "." at the very end waits for the next token), or at a
    line break. Fenced code blocks are dropped whole: they cannot be spoken. A sentence
    longer than `max_chars` is cut at a word boundary, so a run-on answer without any
    punctuation still reaches the voice in pieces. `flush()` returns what is left at the end.

    With `first_clause_chars`, the answer's very first piece may end at a clause break (a comma,
    semicolon, colon or dash followed by whitespace) once it holds that many characters: "Sure,"
    can be spoken while the rest of its sentence is still being generated.
    """

    def __init__(self, max_chars: int = DEFAULT_MAX_SENTENCE_CHARS, *, first_clause_chars: int = 0) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be positive")
        self.max_chars = max_chars
        self.first_clause_chars = first_clause_chars
        self._buf = ""
        self._in_code = False
        self._emitted = False

    def feed(self, token: str) -> list[str]:
        self._buf += token
        return self._drain(final=False)

    def flush(self) -> list[str]:
        out = self._drain(final=True)
        self._buf, self._in_code = "", False
        return out

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            if self._in_code:
                end = self._buf.find(FENCE)
                if end < 0:
                    # Keep only what could begin the closing fence; the code itself is dropped.
                    self._buf = "" if final else self._buf[-(len(FENCE) - 1):]
                    return out
                self._buf = self._buf[end + len(FENCE):]
                self._in_code = False
                continue
            fence = self._buf.find(FENCE)
            text = self._buf if fence < 0 else self._buf[:fence]
            consumed = self._split(text, out, final=final or fence >= 0)
            if fence >= 0:
                self._buf = self._buf[fence + len(FENCE):]
                self._in_code = True
                continue
            self._buf = self._buf[consumed:]
            return out

    def _split(self, text: str, out: list[str], *, final: bool) -> int:
        """Append the complete sentences of `text` to `out`; return how much was consumed."""
        start = 0
        for match in _BOUNDARY.finditer(text):
            term = match.group("term")
            if term == "." and _is_abbreviation(text[start:match.start()]):
                continue
            out.extend(split_long(text[start:match.end()], self.max_chars))
            start = match.end()
        rest = text[start:]
        if final:
            out.extend(split_long(rest, self.max_chars))
            self._emitted = self._emitted or bool(out)
            return len(text)
        if self.first_clause_chars and not self._emitted and not out:
            for match in _CLAUSE.finditer(rest):
                if len(rest[:match.end()].strip()) >= self.first_clause_chars:
                    out.append(rest[:match.end()].strip())
                    start += match.end()
                    rest = text[start:]
                    break
        # An unfinished sentence already over the cap: say its head now, keep the tail.
        while len(rest.strip()) > self.max_chars:
            lead = len(rest) - len(rest.lstrip())
            body = rest[lead:]
            cut = body.rfind(" ", 0, self.max_chars + 1)
            if cut <= 0:
                cut = self.max_chars
            out.append(body[:cut].strip())
            start += lead + cut
            rest = text[start:]
        self._emitted = self._emitted or bool(out)
        return start


async def speakable_sentences(
    tokens: AsyncIterable[str], *, max_chars: int = DEFAULT_MAX_SENTENCE_CHARS, first_clause_chars: int = 0,
) -> AsyncIterator[str]:
    """Cleaned, non-empty sentences from a stream of text deltas, each as soon as it is complete
    (the first one possibly at a clause break: see SentenceSplitter)."""
    splitter = SentenceSplitter(max_chars, first_clause_chars=first_clause_chars)
    async for token in tokens:
        for sentence in splitter.feed(token):
            if cleaned := clean_for_speech(sentence):
                yield cleaned
    for sentence in splitter.flush():
        if cleaned := clean_for_speech(sentence):
            yield cleaned


_FENCED = re.compile(r"```.*?(?:```|\Z)", re.S)
_TILDE_FENCED = re.compile(r"^~~~.*?(?:^~~~|\Z)", re.S | re.M)
_HTML_BLOCKS = re.compile(r"<(script|style)\b.*?(?:</\1\s*>|\Z)", re.S | re.I)
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<!--.*?-->", re.S)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<(?:https?|ftp|mailto):[^>\s]*>", re.I)
_URL = re.compile(r"\b(?:(?:https?|ftp)://|www\.)[^\s<>()\"']+", re.I)
_INLINE_CODE = re.compile(r"`+([^`]*)`+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.M)
_QUOTE = re.compile(r"^\s{0,3}(?:>\s?)+", re.M)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+", re.M)
_RULE = re.compile(r"^\s*(?:[-*_=]\s*){3,}$", re.M)
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$", re.M)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.S)
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC_UNDER = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"~~(.+?)~~", re.S)
_LATEX = re.compile(r"\$\$.*?\$\$", re.S)
_STRAY = re.compile(r"[*#~`|<>{}\\^]+|(?<!\w)_+|_+(?!\w)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_REPEATED_COMMA = re.compile(r"(?:,\s*){2,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_for_speech(text: str) -> str:
    """Plain text a voice can say: no code blocks, markdown, HTML, URLs or control characters.

    Link and image text is kept, their targets dropped; inline code keeps its words;
    table cells are separated by commas; everything ends on one line.
    """
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " "))
    text = _FENCED.sub(" ", text)
    text = _TILDE_FENCED.sub(" ", text)
    text = _LATEX.sub(" ", text)
    text = _HTML_BLOCKS.sub(" ", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(" ", text)
    text = _HTML_TAG.sub(" ", text)
    text = html.unescape(text)
    text = _URL.sub(" ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _TABLE_RULE.sub(" ", text)
    text = _RULE.sub(" ", text)
    text = _HEADING.sub("", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub("", text)
    for _ in range(2):  # nested emphasis: ***both***
        text = _BOLD.sub(r"\2", text)
        text = _ITALIC_STAR.sub(r"\1", text)
        text = _ITALIC_UNDER.sub(r"\1", text)
    text = _STRIKE.sub(r"\1", text)
    # Table rows: cells become a list.
    text = re.sub(r"[ \t]*\|[ \t]*", ", ", text)
    text = _STRAY.sub(" ", text)
    text = " ".join(text.split())
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_COMMA.sub(", ", text)
    return text.strip(" ,;:")


_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")


def cap_answer(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars`: at the last sentence end when that keeps at least
    half, else at the last word boundary with an ellipsis."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    text = text.strip()
    if len(text) <= max_chars:
        return text
    head = text[:max_chars + 1]
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if m.end() <= max_chars]
    if ends and ends[-1] >= max_chars // 2:
        return text[:ends[-1]].strip()
    room = max_chars - 1  # for the ellipsis
    cut = text.rfind(" ", 0, room + 1)
    if cut <= 0:
        cut = room
    return text[:cut].rstrip(" ,;:-") + "…"
