"""The header lines FastAPI's one-write replies check, and remember."""

from __future__ import annotations

from aisetl import _uvicorn_http


def test_only_header_lines_fit_to_write_are_remembered() -> None:
    """send_whole remembers the header lines it checked, never one it must refuse."""
    _uvicorn_http._CHECKED.clear()
    assert _uvicorn_http._check((b"content-type", b"application/octet-stream"))
    assert (b"content-type", b"application/octet-stream") in _uvicorn_http._CHECKED
    for refused in ((b"content-type", b"text/plain\r\nx-injected: 1"), (b"bad name", b"v"),
                    (b"connection", b"close")):  # fmt: skip
        assert not _uvicorn_http._check(refused)
        assert refused not in _uvicorn_http._CHECKED
    for second in range(2 * _uvicorn_http._CHECKED_MAX):  # a new date line every second
        assert _uvicorn_http._check((b"date", b"second %d" % second))
    assert len(_uvicorn_http._CHECKED) <= _uvicorn_http._CHECKED_MAX
