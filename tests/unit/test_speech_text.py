"""Streamed LLM text made speakable: sentence splitting, markup cleaning, answer caps."""

from __future__ import annotations

import pytest

from app.domain.speech_text import (
    SentenceSplitter,
    cap_answer,
    clean_for_speech,
    speakable_sentences,
    split_long,
)


def _feed_all(tokens: list[str], max_chars: int = 300) -> tuple[list[list[str]], list[str]]:
    splitter = SentenceSplitter(max_chars)
    per_token = [splitter.feed(t) for t in tokens]
    return per_token, splitter.flush()


def _sentences(text: str, *, step: int = 1, max_chars: int = 300) -> list[str]:
    per_token, rest = _feed_all([text[i:i + step] for i in range(0, len(text), step)], max_chars)
    return [s for batch in per_token for s in batch] + rest


def test_sentence_is_yielded_as_soon_as_whitespace_follows_its_end() -> None:
    per_token, rest = _feed_all(["Hello", " there", ".", " How", " are", " you", "?"])
    assert per_token == [[], [], [], ["Hello there."], [], [], []]
    assert rest == ["How are you?"]


def test_a_dot_at_the_end_of_the_buffer_waits_for_the_next_token() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("It costs 3.") == []
    assert splitter.feed("5 euros. Next") == ["It costs 3.5 euros."]
    assert splitter.flush() == ["Next"]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_abbreviations_numbers_and_initials_do_not_split(step: int) -> None:
    text = ("Bring snacks, e.g. fruit and nuts, i.e. healthy ones. Version 3.5 ships on Oct. 3 "
            "at 10 a.m. with Dr. Smith and J. R. Tolkien. Pi is about 3.14159! Really? Yes… ok.")
    assert _sentences(text, step=step) == [
        "Bring snacks, e.g. fruit and nuts, i.e. healthy ones.",
        "Version 3.5 ships on Oct. 3 at 10 a.m. with Dr. Smith and J. R. Tolkien.",
        "Pi is about 3.14159!",
        "Really?",
        "Yes…",
        "ok.",
    ]


def test_closing_quotes_and_brackets_stay_with_their_sentence() -> None:
    assert _sentences('She said "stop." Then (quietly.) we left.') == [
        'She said "stop."', "Then (quietly.)", "we left."]


def test_line_breaks_end_list_items_and_numbered_items_stay_whole() -> None:
    text = "Agenda:\n1. Budget review\n2. Hiring plan\n- Q3 goals\n\nThat is all."
    assert _sentences(text, step=4) == [
        "Agenda:", "1. Budget review", "2. Hiring plan", "- Q3 goals", "That is all."]


def test_fenced_code_blocks_are_dropped_even_when_split_across_tokens() -> None:
    text = "Run this:\n```py\nprint('a. b. c.')\nx = 1\n``` Then restart. Done"
    for step in (1, 2, 5, 100):
        assert _sentences(text, step=step) == ["Run this:", "Then restart.", "Done"], step


def test_unclosed_code_block_is_dropped_at_flush() -> None:
    assert _sentences("Here. ```bash\nrm -rf / now. more.") == ["Here."]


def test_over_long_sentence_is_cut_at_a_word_boundary_before_it_ends() -> None:
    words = " ".join(f"word{i}" for i in range(60))  # ~ 410 chars, no punctuation
    splitter = SentenceSplitter(max_chars=50)
    early: list[str] = []
    for word in words.split(" "):
        early += splitter.feed(word + " ")
    assert early, "pieces come out before the stream ends"
    pieces = early + splitter.flush()
    assert all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces) == words
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)


def test_a_word_longer_than_the_cap_is_cut_hard() -> None:
    assert split_long("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]
    assert _sentences("x" * 23 + ". ok", max_chars=10) == ["x" * 10, "x" * 10, "xxx.", "ok"]


def test_splitter_rejects_a_non_positive_cap() -> None:
    with pytest.raises(ValueError):
        SentenceSplitter(0)


async def test_speakable_sentences_cleans_and_skips_empty_ones() -> None:
    async def tokens():
        for t in ["**Sure!** See ", "[the docs](https://x.example/a.b). ", "```\ncode\n```", "\n",
                  "# Done", "\n---\n"]:
            yield t

    assert [s async for s in speakable_sentences(tokens())] == ["Sure!", "See the docs.", "Done"]


@pytest.mark.parametrize("raw, spoken", [
    ("**Bold** and *italic* and __under__ and _this_ and ~~gone~~", "Bold and italic and under and this and gone"),
    ("snake_case stays, 2*3*4 stays", "snake_case stays, 2 3 4 stays"),
    ("# Title\n## Sub", "Title Sub"),
    ("> quoted line", "quoted line"),
    ("- one\n* two\n+ three\n1. four\n2) five", "one two three four five"),
    ("See [the guide](https://example.com/guide) now", "See the guide now"),
    ("Logo: ![a cat](http://x/cat.png)", "Logo: a cat"),
    ("Visit https://example.com/path?q=1 or www.example.org today.", "Visit or today."),
    ("Mail <mailto:a@b.c> please", "Mail please"),
    ("Use `pip install x` first", "Use pip install x first"),
    ("Before\n```python\nimport os\nos.remove('x')\n```\nafter", "Before after"),
    ("Before\n~~~\ncode\n~~~\nafter", "Before after"),
    ("Open ```never closed code", "Open"),
    ("<p>Hello <b>world</b></p><script>alert(1)</script>", "Hello world"),
    ("Fish &amp; chips &lt;3", "Fish & chips 3"),
    ("| Name | Role |\n|---|---|\n| Ana | Lead |", "Name, Role, Ana, Lead"),
    ("Above\n\n---\n\nBelow", "Above Below"),
    ("Formula $$x^2$$ here", "Formula here"),
    ("tab\there\x07bell\r\nline", "tab here bell line"),
    ("Plain sentence, untouched.", "Plain sentence, untouched."),
    ("", ""),
    ("```\nonly code\n```", ""),
])
def test_clean_for_speech(raw: str, spoken: str) -> None:
    assert clean_for_speech(raw) == spoken


def test_cap_answer_keeps_short_text_and_prefers_a_sentence_end() -> None:
    assert cap_answer("  Short.  ", 100) == "Short."
    text = "First sentence here. Second one is a bit longer. Third never fits at all in the cap."
    assert cap_answer(text, 60) == "First sentence here. Second one is a bit longer."


def test_cap_answer_falls_back_to_a_word_boundary_with_an_ellipsis() -> None:
    text = "Tiny. " + "and so on " * 20
    capped = cap_answer(text, 40)
    assert len(capped) <= 40
    assert capped.endswith("…") and not capped[:-1].endswith(" ")
    assert text.startswith(capped[:-1])
    assert cap_answer("x" * 50, 10) == "x" * 9 + "…"
    with pytest.raises(ValueError):
        cap_answer("x", 0)


def test_the_first_clause_can_go_first() -> None:
    from app.domain.speech_text import SentenceSplitter

    splitter = SentenceSplitter(first_clause_chars=4)
    assert splitter.feed("Sure, the ans") == ["Sure,"]
    assert splitter.feed("wer is 3,5 and, well") == []  # only the first piece is a clause
    assert splitter.feed(". Next, one.") == ["the answer is 3,5 and, well."]
    assert splitter.flush() == ["Next, one."]
    short = SentenceSplitter(first_clause_chars=10)
    assert short.feed("Yes, it is. ") == ["Yes, it is."]  # "Yes," is under 10 characters
    assert SentenceSplitter().feed("Sure, the answer ") == []
