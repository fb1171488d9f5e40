"""A real HTTP file server for download tests: GitHub's raw layout and the Hugging Face hub's
``resolve`` routes are both just paths under its root folder.

It answers HEAD and GET with the headers huggingface_hub reads (ETag, Content-Length,
X-Repo-Commit), honours ``Range`` (206 + Content-Range) so interrupted downloads resume,
can be slowed down to make a transfer interruptible, and logs every request.

Run by hand: ``python -m tests.support.file_server ROOT [--rate BYTES_PER_S]`` (prints its URL).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
_CHUNK = 16 * 1024


@dataclass
class RequestLog:
    entries: list[tuple[str, str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, range_header: str | None) -> None:
        with self.lock:
            self.entries.append((method, path, range_header))

    def ranges(self, suffix: str) -> list[str]:
        with self.lock:
            return [r for m, p, r in self.entries if m == "GET" and p.endswith(suffix) and r]

    def gets(self, suffix: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.entries if m == "GET" and p.endswith(suffix))


class FileServer:
    """Serve ``root`` on 127.0.0.1 from a background thread; use as a context manager."""

    def __init__(self, root: Path, rate_bytes_per_s: float | None = None) -> None:
        self.root = root.resolve()
        self.rate = rate_bytes_per_s
        self.log = RequestLog()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                server._serve(self, body=False)

            def do_GET(self) -> None:
                server._serve(self, body=True)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        range_header = handler.headers.get("Range")
        self.log.add(handler.command, path, range_header)
        target = (self.root / path.lstrip("/")).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.send_header("X-Error-Code", "EntryNotFound")
            handler.end_headers()
            return
        data = target.read_bytes()
        start, end = 0, len(data)
        status = 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)) + 1, len(data)) if match.group(2) else len(data)
            status = 206
        handler.send_response(status)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(end - start))
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("X-Repo-Commit", FAKE_COMMIT)
        handler.send_header("Accept-Ranges", "bytes")
        if status == 206:
            handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        handler.end_headers()
        if not body:
            return
        try:
            for at in range(start, end, _CHUNK):
                handler.wfile.write(data[at : min(at + _CHUNK, end)])
                if self.rate:
                    time.sleep(_CHUNK / self.rate)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away mid-transfer: exactly what resume tests do


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--rate", type=float, default=None, help="bytes per second per transfer")
    args = parser.parse_args()
    with FileServer(args.root, args.rate) as server:
        print(server.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
