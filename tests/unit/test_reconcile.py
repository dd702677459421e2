"""The journal's end against the venue's stream (`hftd.gateway.reconcile`), pure."""

from __future__ import annotations

from hftd.gateway.reconcile import StreamCheck


def journal(last: int) -> dict[int, bytes]:
    return {s: b"msg%d" % s for s in range(1, last + 1)}


def test_the_venue_resending_the_journals_end_agrees() -> None:
    c = StreamCheck(journal(40), 40, "S1", overlap=5)
    assert c.first == 36 and c.state == "verifying" and set(c.journaled) == set(range(36, 41))
    c.on_login("S1", 36, 36)
    assert [c.on_message(s, b"msg%d" % s) for s in range(36, 41)] == [False] * 5
    assert c.state == "agreed" and c.verified == 5 and c.problems == []
    assert c.on_message(41, b"new") is True  # new: journal and apply it
    c.on_idle(42)
    assert c.state == "agreed"


def test_an_empty_journal_has_nothing_to_verify() -> None:
    c = StreamCheck({}, 0, "", overlap=16)
    assert (c.first, c.state, c.done) == (1, "agreed", True)
    assert c.on_message(1, b"x") is True


def test_a_large_overlap_rereads_the_whole_day() -> None:
    c = StreamCheck(journal(10), 10, "", overlap=10_000)
    assert c.first == 1
    c.on_login("ANY", 1, 1)
    for s in range(1, 11):
        c.on_message(s, b"msg%d" % s)
    assert c.state == "agreed" and c.verified == 10


def test_a_different_message_is_a_mismatch() -> None:
    c = StreamCheck(journal(20), 20, "", overlap=4)
    c.on_login("S1", 17, 17)
    c.on_message(17, b"msg17")
    assert c.on_message(18, b"other") is False
    assert c.state == "mismatch" and "message 18 differs" in c.problems[0]
    # after it, nothing the journal has is applied again; what is new still is
    assert c.on_message(19, b"msg19") is False and c.on_message(21, b"x") is True
    assert len(c.problems) == 1


def test_a_venue_stream_shorter_than_the_journal() -> None:
    # the venue has nothing at the numbers asked for: it says so at login
    c = StreamCheck(journal(200), 200, "", overlap=16)
    c.on_login("S1", 2, 185)
    assert c.state == "mismatch"
    assert "stream ends at 1, the journal has messages up to 200" in c.problems[0]
    # or it re-sends some and goes quiet before the journal's end (a fill never sent)
    c = StreamCheck(journal(30), 31, "", overlap=4)
    c.on_login("S1", 28, 28)
    for s in (28, 29, 30):
        c.on_message(s, b"msg%d" % s)
    assert c.state == "verifying"
    c.on_idle(31)
    assert c.state == "mismatch" and "never sent" in c.problems[0]


def test_another_session_is_another_day() -> None:
    c = StreamCheck(journal(5), 5, "DAY1", overlap=3)
    c.on_login("DAY2", 3, 3)
    assert c.state == "mismatch" and "'DAY2', the journal's is 'DAY1'" in c.problems[0]
    ok = StreamCheck(journal(5), 5, "", overlap=3)  # a journal that never logged in
    ok.on_login("DAY2", 3, 3)
    assert ok.state == "verifying"


def test_a_gap_in_the_journal_and_a_venue_that_skips() -> None:
    j = journal(10)
    del j[8]
    c = StreamCheck(j, 10, "", overlap=5)
    c.on_login("", 6, 6)
    c.on_message(6, b"msg6")
    c.on_message(7, b"msg7")
    c.on_message(8, b"msg8")
    assert c.state == "mismatch" and "no message 8" in c.problems[0]
    c = StreamCheck(journal(10), 10, "", overlap=5)
    c.on_login("", 9, 6)
    assert c.state == "mismatch" and "starts at 9" in c.problems[0]


def test_a_reconnect_while_verifying_carries_on() -> None:
    c = StreamCheck(journal(10), 10, "", overlap=5)
    c.on_login("S", 6, 6)
    c.on_message(6, b"msg6")
    c.on_login("S", 7, 7)  # the link dropped; logged in again from where it was
    for s in range(7, 11):
        c.on_message(s, b"msg%d" % s)
    assert c.state == "agreed" and c.summary() == {
        "state": "agreed",
        "from": 6,
        "to": 10,
        "verified": 5,
        "problems": [],
    }
