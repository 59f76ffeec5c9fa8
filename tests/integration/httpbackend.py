# SPDX-License-Identifier: MIT
"""A small HTTP/1.1 backend for balancer tests, with knobs for misbehaviour.

usage: httpbackend.py NAME PORT

  GET  /whoami         200 {"name": NAME}
  GET  /healthz        200, or 503 while the file ./NAME.sick exists
  ANY  /reset          reads the request, then resets the connection without answering
                       (every path does so while the file ./NAME.reset exists)
  ANY  /hang           never answers
  ANY  /echo           200 with the request as JSON (method, path, headers, body)
Every answer carries X-Server: NAME and counts into ./NAME.count (one line per request).
"""
import json
import os
import socket
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]
PORT = int(sys.argv[2])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code, obj):
        data = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Server", NAME)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self):
        body = self._body()
        path = self.path.split("?")[0]
        with open(f"{NAME}.count", "a") as f:
            f.write(f"{self.command} {self.path}\n")
        if path == "/reset" or os.path.exists(f"{NAME}.reset"):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if path == "/hang":
            time.sleep(60)
            return
        if path == "/healthz":
            if os.path.exists(f"{NAME}.sick"):
                self._send(503, {"status": "sick"})
            else:
                self._send(200, {"status": "ok"})
            return
        if path == "/whoami":
            self._send(200, {"name": NAME})
            return
        self._send(200, {"name": NAME, "method": self.command, "path": self.path,
                         "headers": {k.lower(): v for k, v in self.headers.items()},
                         "body": body.decode(errors="replace")})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    Server(("127.0.0.1", PORT), Handler).serve_forever()
