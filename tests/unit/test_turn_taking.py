"""When the PAL speaks: greeting, addressed answers, hanging questions, pauses, barge-in, limits."""

from __future__ import annotations

from app.domain.turn_taking import Act, TurnPolicy, addressed_elsewhere, addresses, is_question, name_words


def test_name_words_and_addressing() -> None:
    assert name_words("Anna") == ("anna",)
    assert name_words("Anna Lind") == ("anna", "anna lind")
    assert name_words("") == ()
    names = name_words("Zoë")
    assert addresses("zoe, what time is it", names)
    assert addresses("What do you think, ZOË?", names)
    assert not addresses("Zoey is here", names)  # whole words only
    assert not addresses("anything", name_words("Ann"))


def test_questions_and_vocatives() -> None:
    assert is_question("What is on the agenda?")
    assert is_question('He asked "why?"')
    assert not is_question("That is all.")
    names = name_words("Anna")
    assert addressed_elsewhere("Bob, can you share the doc?", names)
    assert not addressed_elsewhere("Anna, can you share the doc?", names)
    assert not addressed_elsewhere("Can someone share the doc?", names)


def test_greets_once_when_admitted() -> None:
    p = TurnPolicy("Anna")
    first = p.admitted(0.0)
    assert first is not None and first.act is Act.GREET
    p.finished(2.0)
    assert p.admitted(3.0) is None


def test_answers_when_addressed_on_a_final_line() -> None:
    p = TurnPolicy("Anna")
    assert p.caption("r1", "Bob", "Anna, what is on", False, 1.0) is None  # partial: not yet
    d = p.caption("r1", "Bob", "Anna, what is on the agenda?", True, 1.5)
    assert d is not None and d.act is Act.ANSWER and d.why == "addressed" and d.speaker == "Bob"
    assert p.talking


def test_waits_for_others_to_pause_before_answering() -> None:
    p = TurnPolicy("Anna", others_pause=0.8)
    p.caption("c1", "Carol", "I also wanted to", False, 1.0)
    assert p.caption("b1", "Bob", "Anna, can you summarise?", True, 1.2) is None  # Carol is mid-sentence
    assert p.tick(1.5) is None
    d = p.tick(1.9)  # Carol's line has not grown for 0.9 s
    assert d is not None and d.act is Act.ANSWER


def test_a_hanging_question_is_answered_after_the_pause() -> None:
    p = TurnPolicy("Anna", question_pause=2.5)
    assert p.caption("b1", "Bob", "What is the budget for Q3?", True, 10.0) is None
    assert p.tick(11.0) is None
    d = p.tick(12.6)
    assert d is not None and d.why == "question"


def test_a_question_taken_up_or_for_someone_else_is_left_alone() -> None:
    p = TurnPolicy("Anna", question_pause=2.5)
    p.caption("b1", "Bob", "What is the budget for Q3?", True, 10.0)
    p.caption("c1", "Carol", "It is three million", True, 11.0)
    assert p.tick(20.0) is None
    p.caption("b2", "Bob", "Carol, did you send it?", True, 30.0)
    assert p.tick(40.0) is None


def test_barge_in_while_talking() -> None:
    p = TurnPolicy("Anna")
    assert p.caption("b1", "Bob", "Anna, tell me a story", True, 1.0) is not None
    d = p.caption("c1", "Carol", "Wait a second", False, 2.0)
    assert d is not None and d.act is Act.BARGE_IN and d.speaker == "Carol"
    assert not p.talking
    assert p.caption("c1", "Carol", "Wait a second please", False, 2.2) is None  # once per turn
    assert p.caption("c1", "Carol", "um", False, 2.3) is None


def test_short_noise_is_not_speech() -> None:
    p = TurnPolicy("Anna")
    p.caption("b1", "Bob", "Anna, go on", True, 1.0)
    assert p.caption("x", "Bob", "uh", False, 1.5) is None
    assert p.talking


def test_gap_and_rate_limit() -> None:
    p = TurnPolicy("Anna", min_gap=1.0, max_per_minute=2)
    assert p.caption("1", "Bob", "Anna, one?", True, 0.0) is not None
    p.finished(1.0)
    assert p.caption("2", "Bob", "Anna, two?", True, 1.5) is None  # inside min_gap: waits
    assert p.tick(2.1) is not None
    p.finished(3.0)
    assert p.caption("3", "Bob", "Anna, three?", True, 10.0) is None  # third within a minute
    assert p.tick(61.0) is None  # dropped, not deferred forever
    assert p.caption("4", "Bob", "Anna, four?", True, 70.0) is not None


def test_loud_meeting_audio_stops_the_pal_before_captions_do() -> None:
    p = TurnPolicy("Anna", barge_in_after=0.3)
    assert p.heard(True, 0.0) is None  # nobody is interrupted when the PAL is quiet
    p.heard(False, 0.1)
    assert p.caption("b1", "Bob", "Anna, go on", True, 1.0) is not None
    assert p.heard(True, 2.0) is None
    assert p.heard(True, 2.2) is None
    assert p.heard(False, 2.25) is None  # a click, not speech: the run starts again
    assert p.heard(True, 2.3) is None
    d = p.heard(True, 2.61)
    assert d is not None and d.act is Act.BARGE_IN and d.why == "heard"
    assert p.heard(True, 2.7) is None and not p.talking


def test_a_room_loud_before_the_pal_began_is_noise() -> None:
    p = TurnPolicy("Anna", barge_in_after=0.3)
    for i in range(10):
        p.heard(True, i * 0.1)  # a fan, from t=0
    assert p.caption("b1", "Bob", "Anna, go on", True, 1.0) is not None
    assert all(p.heard(True, 1.0 + i * 0.1) is None for i in range(20))
    assert p.talking


def test_chat_answers_share_the_per_minute_limit() -> None:
    p = TurnPolicy("Anna", max_per_minute=2)
    assert p.chat_allowed(0.0) and p.chat_allowed(1.0)
    assert not p.chat_allowed(2.0)
    assert p.chat_allowed(60.5)  # the first one has left the window
