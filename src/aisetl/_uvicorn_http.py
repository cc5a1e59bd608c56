"""uvicorn's HTTP/1.1 protocol, except that a request it cannot parse gets our error format.

uvicorn answers every parse error with the same ``Invalid HTTP request received.``; the parser
knows what was wrong (``Invalid character in Content-Length``, ``Invalid character in chunk
size``, ...), and the client should be told, in the words every other failure uses.
The override relies on parts of uvicorn's protocol that are not public (:data:`UVICORN_METHODS`,
:data:`UVICORN_ATTRIBUTES`), checked at import; where one is missing, :data:`ETLHttpToolsProtocol`
is uvicorn's own protocol and a :class:`~aisetl._hooks.DependencyWarning` says so.
"""

from __future__ import annotations

import sys

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aisetl._hooks import missing, warn_missing
from aisetl.http11 import serialize
from aisetl.protocol import decode_path
from aisetl.reply import malformed_request_reply

#: The method uvicorn calls for a request it cannot parse, which the subclass overrides.
UVICORN_METHODS = ("send_400_response",)
#: Connection state the override reads.
UVICORN_ATTRIBUTES = ("url", "logger", "client", "transport")
LOST = (
    "a request uvicorn cannot parse gets uvicorn's own 'Invalid HTTP request received.' "
    "instead of the parser's reason in aisetl's error format"
)


class ParseErrorProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; a malformed request is answered with the parser's reason."""

    def send_400_response(self, msg: str) -> None:
        error = sys.exc_info()[1]  # set while uvicorn handles the parser's exception
        detail = str(error) if isinstance(error, httptools.HttpParserError) and str(error) else msg
        raw_path = self.url.partition(b"?")[0].decode("latin-1")
        path = decode_path(raw_path) if raw_path.startswith("/") else None
        self.logger.warning("malformed request from %s: %s", self.client, detail)
        self.transport.write(serialize(malformed_request_reply(400, detail, path)))
        self.transport.close()


def missing_hooks(base: type) -> list[str]:
    """What of :data:`UVICORN_METHODS` and :data:`UVICORN_ATTRIBUTES` ``base`` lacks."""
    return missing(base, UVICORN_METHODS, UVICORN_ATTRIBUTES)


#: The protocol class to give uvicorn as ``http=``.
ETLHttpToolsProtocol: type[HttpToolsProtocol] = (
    HttpToolsProtocol
    if warn_missing("uvicorn", missing_hooks(HttpToolsProtocol), LOST)
    else ParseErrorProtocol
)
