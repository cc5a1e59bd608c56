"""Finding an object's traceback in a server log, in the formats the servers write."""

from __future__ import annotations

from aisetl.cli.failures import traceback_for

TRACE = """Traceback (most recent call last):
  File "/srv/server.py", line 30, in transform
    raise RuntimeError("exploded")
RuntimeError: exploded"""

LOG = f"""2026-12-01 13:21:07,096 - Fragile - INFO - FastAPI server on 127.0.0.1:53681, 1 worker(s)
2026-12-01 13:21:07,120 - Fragile - ERROR - hpush src/b1.txt failed (500): Transform failed
{TRACE}
2026-12-01 13:21:10,844 - Fragile - ERROR - ws task for 'c.txt' failed (500): Transform failed
{TRACE.replace("exploded", "ws exploded")}
2026-12-01 13:21:10,900 - Fragile - ERROR - hpush src/nb1.txt failed (404): not found
2026-12-01 13:21:11,000 - Fragile - INFO - done
"""


def test_an_http_failure_record_gives_its_traceback() -> None:
    assert traceback_for(LOG, "src/b1.txt") == TRACE


def test_a_ws_failure_record_gives_its_traceback() -> None:
    assert traceback_for(LOG, "c.txt").endswith("RuntimeError: ws exploded")


def test_a_name_that_ends_another_name_does_not_match_it() -> None:
    assert traceback_for(LOG, "b1.txt") == ""  # only "src/b1.txt" and "src/nb1.txt" were logged


def test_a_failure_without_a_traceback_gives_none() -> None:
    assert traceback_for(LOG, "src/nb1.txt") == ""
    assert traceback_for(LOG, "missing") == ""


def test_the_tail_is_bounded() -> None:
    assert traceback_for(LOG, "src/b1.txt", lines=2).splitlines() == [
        '    raise RuntimeError("exploded")',
        "RuntimeError: exploded",
    ]
