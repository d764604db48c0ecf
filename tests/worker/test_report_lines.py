"""Report lines read fast (the plain id taken as it is, the C JSON scanner) and still
exactly: any id comes back as it was sent, and what the full JSON reader refuses is an
unreadable line."""

from __future__ import annotations

import os

from supervisor_q.worker.report import PipeReporter, parse_lines

IDS = ["plain-uuid-0f3c", "", "a b", 'quote " in', "back\\slash", "new\nline", "tab\t",
       "caf\u00e9", "\u2603 snow", "\udcff\udcfe surrogates", "\x00\x1f\x7f", "/slash",
       "\\u0041 not an escape", '"', "{[,]}"]


def test_every_id_comes_back_as_it_was_sent() -> None:
    read_fd, write_fd = os.pipe()
    reporter = PipeReporter(write_fd)
    for job_id in IDS:
        reporter.job_started(job_id, f"n {job_id}", f"q {job_id}", 5.0, 1, 0.5)
        reporter.job_finished(job_id, "failed")
    events, rest = parse_lines(os.read(read_fd, 1 << 16))
    os.close(read_fd)
    os.close(write_fd)
    assert rest == b""
    assert [(e.kind, e.job_id) for e in events] == [
        (kind, job_id) for job_id in IDS for kind in ("started", "finished")]
    assert all(e.name == f"n {e.job_id}" and e.queue == f"q {e.job_id}" and e.wait == 0.5
               for e in events if e.kind == "started")
    assert {e.outcome for e in events if e.kind == "finished"} == {"failed"}


def test_what_json_refuses_is_unreadable_and_what_it_allows_is_read() -> None:
    lines = (b'E 1.0 done "unterminated\n'
             b'E 1.0 done "two" "strings"\n'
             b'E 1.0 done "raw\x01control"\n'
             b'E 1.0 done "bad \\x escape"\n'
             b'E 1.0 done 42\n'
             b'S 1 1 1 ["a","q","n"] trailing\n'
             b'S 1 1 1 ["a","q"\n'
             b'E 1.0 done  "padded" \n'
             b'S 1 1 1 [ "a" , "q" , "n" , 0.25 ]\n'
             b'E 1.0 done "\\u00e9"\n')
    events, rest = parse_lines(lines)
    assert rest == b""
    assert [e.kind for e in events] == ["garbled"] * 7 + ["finished", "started", "finished"]
    padded, spaced, escaped = events[7:]
    assert padded.job_id == "padded"  # JSON's own whitespace, as the reader always took
    assert (spaced.job_id, spaced.queue, spaced.name, spaced.wait) == ("a", "q", "n", 0.25)
    assert escaped.job_id == "\u00e9"
