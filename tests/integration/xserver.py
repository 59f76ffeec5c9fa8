# SPDX-License-Identifier: MIT
"""A small HTTP/1.1 keep-alive test server that stamps `X-Server: NAME` on every response, the
way `tandem app` does. Run as a process so tests can kill -9 or SIGSTOP it:

    python3 xserver.py PORT NAME

Paths: /whoami -> 200 {"name": NAME}; /status/NNN -> that status; /slow/MS -> 200 after MS ms;
/noheader -> 200 without X-Server; /close -> 200 with Connection: close; /reset -> closes the
connection without answering; /check -> 200 for `POST` with `X-Test: 1` and body "hello", else
500. Everything else -> 404 (still "ok" for the load generator). Prints "first request", then
"served 100" and "served 1000" as traffic arrives.
"""
import http.server
import json
import socket
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes
    server_name_ = "x"
    served = 0

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def _send(self, status, body, server=True, close=False):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if server:
            self.send_header("X-Server", self.server_name_)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self):
        Handler.served += 1  # racy across threads, good enough for progress lines
        if Handler.served in (1, 100, 1000):
            print("first request" if Handler.served == 1 else f"served {Handler.served}",
                  flush=True)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        p = self.path
        if p == "/whoami":
            self._send(200, json.dumps({"name": self.server_name_}))
        elif p.startswith("/status/"):
            self._send(int(p[len("/status/"):]), "{}")
        elif p.startswith("/slow/"):
            time.sleep(int(p[len("/slow/"):]) / 1000.0)
            self._send(200, "{}")
        elif p == "/noheader":
            self._send(200, "{}", server=False)
        elif p == "/close":
            self._send(200, "{}", close=True)
        elif p == "/reset":
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
        elif p == "/check":
            good = (self.command == "POST" and self.headers.get("X-Test") == "1"
                    and body == b"hello")
            self._send(200 if good else 500, "{}")
        else:
            self._send(404, "{}")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):  # clients abandon requests on purpose
        pass


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    Handler.server_name_ = name
    srv = Server(("127.0.0.1", port), Handler)
    srv.serve_forever()


if __name__ == "__main__":
    main()
