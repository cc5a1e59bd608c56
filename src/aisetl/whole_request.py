"""One HTTP/1.1 request that came whole in one read, parsed with httptools and nothing else.

uvicorn's protocol does per request what a quick object does not need: a scope dictionary,
the path decoded, a request cycle with its :class:`asyncio.Event`, the body copied into a
``bytearray``. :class:`WholeRequestParser` reads a connection's next read on its own first:
when the read holds exactly one complete request it can take (no upgrade, no
``Expect: 100-continue``, no absolute URL, no trailer fields, a body that came with its head),
the server may answer it from that read alone. Anything else is left to uvicorn's parser, fed
the same bytes as if this parser had never seen them.
"""

from __future__ import annotations

import httptools

from aisetl.edge import content_length


class NotWhole(Exception):
    """The read is not one whole request this parser takes (raised inside its callbacks)."""


class WholeRequestParser:
    """httptools callbacks that keep a request's head and body, for one read at a time.

    After :meth:`take` returned ``True``: :attr:`method`, :attr:`target` (as sent),
    :attr:`headers` (lower-case names, as ASGI has them), :attr:`body`, :attr:`keep_alive`.
    """

    __slots__ = (
        "_complete", "_in_body", "_parser", "_room",
        "body", "headers", "keep_alive", "method", "target",
    )  # fmt: skip

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._complete = False
        self._in_body = False
        self._room = 0
        self.method = ""
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.keep_alive = True  # the connection stays open after the reply

    def take(self, data: bytes) -> bool:
        """Parse ``data``: whether it held exactly one whole request, with nothing after it.

        ``False`` leaves this parser unusable (it may hold part of a request): make a new one.
        """
        self._complete = False
        self._room = len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:  # (raised for NotWhole too, as a callback error)
            return False
        return self._complete

    # --- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            raise NotWhole("a second request in the same read")
        self.target = b""
        self.headers = []
        self.body = b""
        self._in_body = False

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:  # a chunked body's trailer fields: uvicorn's protocol bounds them
            raise NotWhole("trailer fields")
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        if parser.should_upgrade() or not self.target.startswith(b"/") or b"#" in self.target:
            raise NotWhole("an upgrade, or a target uvicorn parses")
        for name, value in self.headers:
            if name == b"expect" or (name == b"content-length" and not self._fits(value)):
                raise NotWhole("100-continue, or a body longer than this read")
        self.method = parser.get_method().decode("ascii")
        self._in_body = True
        # (read here: the parser forgets both once the request is complete)
        self.keep_alive = parser.get_http_version() != "1.0" and bool(parser.should_keep_alive())

    def _fits(self, declared: bytes) -> bool:
        """Whether a declared length is a valid one that fits in the read being parsed."""
        length = content_length(declared)
        return length is not None and length <= self._room

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self._complete = True
