"""How the orchestrator reaches a tool API: TCP (``http://host:port``) or a Unix socket.

A container sandbox has no network at all; its tool API listens on a Unix socket in
a host folder bind-mounted into the container, named ``unix:/abs/path/tool.sock``.
"""

from __future__ import annotations

from typing import Any

import httpx

UNIX_PREFIX = "unix:"


def unix_url(socket_path: str) -> str:
    return UNIX_PREFIX + socket_path


def async_client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client whose base URL is the tool API at ``url``, whatever its transport."""
    if url.startswith(UNIX_PREFIX):
        transport = httpx.AsyncHTTPTransport(uds=url.removeprefix(UNIX_PREFIX))
        return httpx.AsyncClient(base_url="http://sandbox", transport=transport, **kwargs)
    return httpx.AsyncClient(base_url=url, **kwargs)


def sync_client(url: str, **kwargs: Any) -> httpx.Client:
    if url.startswith(UNIX_PREFIX):
        transport = httpx.HTTPTransport(uds=url.removeprefix(UNIX_PREFIX))
        return httpx.Client(base_url="http://sandbox", transport=transport, **kwargs)
    return httpx.Client(base_url=url, **kwargs)
