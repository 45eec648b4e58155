#!/usr/bin/env python3
"""A stand-in for `tandem router|worker` in the planner's live test, started by `tandem up
--role-command`; `tandem planner` itself is run for real (this script execs $TANDEM_BINARY).

Like tests/orchestrator/fake_role.py it serves what the orchestrator needs (GET /ready,
GET /health with an epoch, POST /admin/drain and SIGTERM as drain), and it exits when its parent
goes away. On top of that it serves what the planner reads, with the names of docs/metrics.md:

  router  POST /v1/workers/heartbeat  {"url", "role", "epoch", "ready", "draining"}; answers
                                      {"peers": {"prefill": n, "decode": m}} (ready workers seen
                                      in the last second, draining ones left out)
          GET  /v1/workers            {"workers": [{"url", "role", "epoch", "state"}, ...]}
          GET  /metrics               tandem_router_* counters growing at the rates of
                                      $FAKE_LOAD_FILE ("prompt_tps", "output_tps", prompts of
                                      "prompt_tokens")
  worker  heartbeats to --router every 100 ms, learns how many peers of its role are up
          GET  /metrics               tandem_worker_info{role, model, epoch}, and its share of
                                      the role's load: the total in $FAKE_LOAD_FILE (JSON
                                      {"prefill": tokens, "decode": blocks, "noise": fraction})
                                      divided by its peers, times 1 +- noise (seeded by
                                      instance, so runs repeat):
                                        prefill: tandem_worker_prefill_queue_tokens = share,
                                                 TTFT = 0.05 s + 1e-4 s x share
                                        decode:  tandem_worker_active_kv_blocks = share,
                                                 ITL = 0.01 s + 1e-3 s x share
                                      each scrape adds 10 observations at that latency to
                                      tandem_worker_ttft_seconds / _itl_seconds (sum, count).
"""
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGV = sys.argv[1:]
if ARGV and ARGV[0] == "planner":
    binary = os.environ.get("TANDEM_BINARY")
    if not binary:
        sys.exit("fake_role: TANDEM_BINARY (the tandem executable) is needed to run the planner")
    os.execv(binary, [binary] + ARGV)

KIND = ARGV[0] if ARGV else "?"
EPOCH = f"{os.getpid()}-{time.time_ns()}"
INSTANCE = os.environ.get("TANDEM_INSTANCE", "?")
LOAD_FILE = os.environ.get("FAKE_LOAD_FILE", "")


def flag(name, default=""):
    for i, arg in enumerate(ARGV):
        if arg == name and i + 1 < len(ARGV):
            return ARGV[i + 1]
    return default


ROLE = flag("--role", KIND)
ADVERTISE = flag("--advertise", flag("--listen"))
ROUTER = flag("--router")

lock = threading.Lock()
state = {"ready": False, "draining": False}
registry = {}  # router: url -> {"role", "epoch", "ready", "draining", "seen"}
peers = {"prefill": 1, "decode": 1}
histogram = {"sum": 0.0, "count": 0}
router_counters = {"prompt": 0.0, "generated": 0.0, "requests": 0}
rng = random.Random(sum(ord(c) for c in INSTANCE + ROLE))


def start_drain():
    with lock:
        if state["draining"]:
            return
        state["draining"] = True
        state["ready"] = False
    if ROUTER and KIND == "worker":
        heartbeat()  # tell the router at once, so the peers' shares move over

    def exit_soon():
        time.sleep(0.2)
        os._exit(0)

    threading.Thread(target=exit_soon, daemon=True).start()


def heartbeat():
    with lock:
        body = {"url": "http://" + ADVERTISE, "role": ROLE, "epoch": EPOCH,
                "ready": state["ready"], "draining": state["draining"]}
    request = urllib.request.Request(ROUTER.rstrip("/") + "/v1/workers/heartbeat",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=1) as answer:
            seen = json.loads(answer.read()).get("peers", {})
        with lock:
            for role in ("prefill", "decode"):
                peers[role] = max(1, int(seen.get(role, 1)))
    except Exception:
        pass  # the router may not be up yet, or be going away; try again next beat


def heartbeats():
    while True:
        heartbeat()
        time.sleep(0.1)


def load_share():
    try:
        with open(LOAD_FILE) as f:
            load = json.load(f)
    except Exception:
        load = {}
    total = float(load.get(ROLE, 0))
    noise = float(load.get("noise", 0))
    with lock:
        share = total / peers.get(ROLE, 1)
    return max(0.0, share * (1 + rng.uniform(-noise, noise)))


def worker_metrics():
    share = load_share()
    if ROLE == "prefill":
        latency, histogram_name = 0.05 + 1e-4 * share, "tandem_worker_ttft_seconds"
    else:
        latency, histogram_name = 0.01 + 1e-3 * share, "tandem_worker_itl_seconds"
    with lock:
        histogram["sum"] += 10 * latency
        histogram["count"] += 10
        total, count = histogram["sum"], histogram["count"]
    lines = [
        "# TYPE tandem_worker_info gauge",
        f'tandem_worker_info{{role="{ROLE}",model="fake",epoch="{EPOCH}"}} 1',
        "# TYPE tandem_worker_prefill_queue_tokens gauge",
        f"tandem_worker_prefill_queue_tokens {share if ROLE == 'prefill' else 0}",
        "# TYPE tandem_worker_active_kv_blocks gauge",
        f"tandem_worker_active_kv_blocks {share if ROLE == 'decode' else 0}",
        "# TYPE tandem_worker_running_requests gauge",
        f"tandem_worker_running_requests {share / 4 if ROLE == 'decode' else 0}",
        f"# TYPE {histogram_name} histogram",
        f'{histogram_name}_bucket{{le="+Inf"}} {count}',
        f"{histogram_name}_sum {total}",
        f"{histogram_name}_count {count}",
    ]
    return "\n".join(lines) + "\n"


def router_metrics():
    # Traffic at the rates of $FAKE_LOAD_FILE ("prompt_tps", "output_tps"; prompts of
    # "prompt_tokens" tokens), accumulated over the time since the previous scrape.
    try:
        with open(LOAD_FILE) as f:
            load = json.load(f)
    except Exception:
        load = {}
    now = time.monotonic()
    with lock:
        seconds = now - router_counters.setdefault("time", now)
        router_counters["time"] = now
        prompt = float(load.get("prompt_tps", 0)) * seconds
        router_counters["prompt"] += prompt
        router_counters["requests"] += prompt / float(load.get("prompt_tokens", 1000))
        router_counters["generated"] += float(load.get("output_tps", 0)) * seconds
        c = dict(router_counters)
    return (f"# TYPE tandem_router_prompt_tokens_total counter\n"
            f"tandem_router_prompt_tokens_total {c['prompt']}\n"
            f"tandem_router_cached_prompt_tokens_total 0\n"
            f"tandem_router_generated_tokens_total {c['generated']}\n"
            f'tandem_router_requests_total{{endpoint="completions",outcome="ok"}} {c["requests"]}\n')


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
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
        path = urllib.parse.urlparse(self.path).path
        if path == "/ready":
            with lock:
                ready = state["ready"] and not state["draining"]
            self.reply(200 if ready else 503, json.dumps({"ready": ready}))
        elif path == "/health":
            self.reply(200, json.dumps({"status": "ok", "epoch": EPOCH}))
        elif path == "/metrics":
            text = router_metrics() if KIND == "router" else worker_metrics()
            self.reply(200, text, "text/plain; version=0.0.4")
        elif path == "/v1/workers" and KIND == "router":
            now = time.monotonic()
            with lock:
                workers = [{"url": url, "role": w["role"], "epoch": w["epoch"],
                            "state": "draining" if w["draining"] else
                            ("ready" if w["ready"] else "not_ready")}
                           for url, w in registry.items() if now - w["seen"] < 1.0]
            self.reply(200, json.dumps({"workers": workers}))
        else:
            self.reply(404, json.dumps({"error": "not found"}))

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(length) if length else b""
        if self.path == "/admin/drain":
            start_drain()
            self.reply(202, json.dumps({"draining": True}))
        elif self.path == "/v1/workers/heartbeat" and KIND == "router":
            beat = json.loads(body)
            now = time.monotonic()
            with lock:
                registry[beat["url"]] = {"role": beat["role"], "epoch": beat["epoch"],
                                         "ready": beat["ready"], "draining": beat["draining"],
                                         "seen": now}
                counts = {"prefill": 0, "decode": 0}
                for w in registry.values():
                    if now - w["seen"] < 1.0 and w["ready"] and not w["draining"]:
                        counts[w["role"]] = counts.get(w["role"], 0) + 1
            self.reply(200, json.dumps({"peers": counts}))
        else:
            self.reply(404, json.dumps({"error": "not found"}))


def exit_with_parent(parent):
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def main():
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    host, port = flag("--listen").rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: start_drain())
    with lock:
        state["ready"] = True
    if KIND == "worker" and ROUTER:
        threading.Thread(target=heartbeats, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
