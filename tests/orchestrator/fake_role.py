#!/usr/bin/env python3
"""A stand-in for `tandem router|worker|planner` in the orchestrator tests.

It takes the same command line (only --listen HOST:PORT matters) and serves the endpoints every
role process serves for the orchestrator:

  GET  /ready         200 once ready and not draining, else 503
  GET  /health        200 {"status": "ok", "epoch": "<pid>-<start ns>"}
  POST /admin/drain   202; stop taking work, finish what is in flight, exit 0 when idle
  GET  /work?id=N&ms=M  a unit of fake work: 503 when draining (not accepted), else 200 after M ms

SIGTERM means the same as /admin/drain. Behaviour comes from the environment (a role's `env`
in the spec):

  FAKE_READY_AFTER_MS  become ready this long after start (default 0)
  FAKE_NEVER_READY     "1": never become ready
  FAKE_CRASH_AFTER_MS  exit with status 3 this long after start
  FAKE_SPAWN_CHILD     "1": start a `sleep` child in the same process group (leak checks)
  FAKE_EVENTS          append one JSON line per event to this file: start, ready, unready,
                       accepted, finished, exit; "t" is CLOCK_MONOTONIC in ns, comparable
                       across processes and with the test's steady clock

It exits by itself when its parent (the orchestrator) goes away without stopping it.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

START_NS = time.monotonic_ns()
EPOCH = f"{os.getpid()}-{time.time_ns()}"
INSTANCE = os.environ.get("TANDEM_INSTANCE", "?")
ROLE = os.environ.get("TANDEM_ROLE", "?")
EVENTS = os.environ.get("FAKE_EVENTS", "")
ARGS_KEY = " ".join(sys.argv[1:])

lock = threading.Lock()
state = {"ready": False, "draining": False, "in_flight": 0}


def event(kind, **fields):
    if not EVENTS:
        return
    record = {"t": time.monotonic_ns(), "event": kind, "instance": INSTANCE, "role": ROLE,
              "pid": os.getpid(), "pgid": os.getpgid(0), "epoch": EPOCH}
    record.update(fields)
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(EVENTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines from many processes never interleave
    finally:
        os.close(fd)


def listen_address():
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--listen" and i + 1 < len(argv):
            host, port = argv[i + 1].rsplit(":", 1)
            return host, int(port)
    sys.exit("fake_role: --listen HOST:PORT is required")


def exit_when_idle():
    while True:
        with lock:
            if state["in_flight"] == 0:
                event("exit", reason="drained")
                os._exit(0)
        time.sleep(0.01)


def start_drain():
    with lock:
        if state["draining"]:
            return
        state["draining"] = True
        was_ready = state["ready"]
        state["ready"] = False
    if was_ready:
        event("unready")
    threading.Thread(target=exit_when_idle, daemon=True).start()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: the orchestrator's log is for real events
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        self.close_connection = True

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/ready":
            with lock:
                ready = state["ready"] and not state["draining"]
            self.reply(200 if ready else 503, json.dumps({"ready": ready}))
        elif url.path == "/health":
            self.reply(200, json.dumps({"status": "ok", "epoch": EPOCH, "args": ARGS_KEY}))
        elif url.path == "/work":
            query = urllib.parse.parse_qs(url.query)
            request_id = query.get("id", ["?"])[0]
            millis = int(query.get("ms", ["50"])[0])
            with lock:
                if state["draining"] or not state["ready"]:
                    accepted = False
                else:
                    accepted = True
                    state["in_flight"] += 1
            if not accepted:
                self.reply(503, json.dumps({"error": "draining"}))
                return
            event("accepted", id=request_id)
            time.sleep(millis / 1000.0)
            event("finished", id=request_id)
            try:
                self.reply(200, json.dumps({"id": request_id, "instance": INSTANCE}))
            finally:
                with lock:
                    state["in_flight"] -= 1
        else:
            self.reply(404, json.dumps({"error": "not found"}))

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0") or "0")
        if length:
            self.rfile.read(length)
        if self.path == "/admin/drain":
            start_drain()
            self.reply(202, json.dumps({"draining": True}))
        else:
            self.reply(404, json.dumps({"error": "not found"}))


def become_ready_later(delay_ms):
    time.sleep(delay_ms / 1000.0)
    with lock:
        if state["draining"]:
            return
        state["ready"] = True
    event("ready")


def crash_later(delay_ms):
    time.sleep(delay_ms / 1000.0)
    event("exit", reason="crash")
    os._exit(3)


def exit_with_parent(parent):
    # A test that crashes cannot stop its fakes; they notice being orphaned and go.
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def main():
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    host, port = listen_address()
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: start_drain())
    event("start", args=ARGS_KEY)
    if os.environ.get("FAKE_SPAWN_CHILD") == "1":
        subprocess.Popen(["sleep", "300"])
    if os.environ.get("FAKE_NEVER_READY") != "1":
        delay = int(os.environ.get("FAKE_READY_AFTER_MS", "0"))
        threading.Thread(target=become_ready_later, args=(delay,), daemon=True).start()
    crash = os.environ.get("FAKE_CRASH_AFTER_MS")
    if crash:
        threading.Thread(target=crash_later, args=(int(crash),), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
