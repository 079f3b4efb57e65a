"""Stopping without losing a request that a proxy has already sent.

On SIGTERM uvicorn stops listening, lets the requests in flight finish, and closes every idle
keep-alive connection at once. But a proxy keeps connections to its upstreams open between
requests (nginx's ``keepalive``), and one may be sending a request on such a connection at the
very moment it is closed: that request is lost. nginx passes a lost GET on to another
instance, never a POST it has sent (a release, a revocation), which gets a 502. A rolling
restart under load lost about one request in 15,000 that way.

So an instance that is stopping leaves its idle connections to their keep-alive timeout, as
if it were not stopping, and answers whatever arrives on them meanwhile, with ``Connection:
close``: the proxy, whose own keep-alive timeout must be the shorter (docs/deployment.md),
either closes the connection itself or sends a request that is served. The stop takes up to
the keep-alive timeout (5 s) longer.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class DrainingProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), but for how it shuts down a connection."""

    draining = False

    def shutdown(self) -> None:
        self.draining = True
        # uvicorn types its cycle as always there; it is None until the first request is read.
        cycle: RequestResponseCycle | None = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # the response in flight closes the connection
        elif self.timeout_keep_alive_task is None:
            # Accepted, but no request read yet: it is on its way, or never coming.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False
