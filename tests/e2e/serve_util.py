# serve_util.py — shared helpers for the `quern serve` end-to-end tests (not a test itself: ctest only
# discovers test_*.py). Starts `quern serve` on an ephemeral 127.0.0.1 port and Debian's nginx in front of it
# (generated config in a temp dir, non-daemon child), waits for readiness, and always cleans up: every child
# runs in its own process group and is killed (TERM, then KILL) on exit.
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SKIP = 77
DEFAULT_MODEL = os.path.expanduser("~/.cache/quern/models/SmolLM2-135M-Instruct.Q4_1.gguf")


class Skip(Exception):
    pass


def need_env():
    """(quern binary, model path); raises Skip when either is missing."""
    quern = os.environ.get("QN_QUERN_BIN")
    model = os.environ.get("QN_MODEL", DEFAULT_MODEL)
    if not quern or not os.access(quern, os.X_OK):
        raise Skip("QN_QUERN_BIN not set or not executable")
    if not os.path.exists(model):
        raise Skip(f"model {model} missing (scripts/fetch_model.sh)")
    return quern, model


def sanitized():
    """True when the build under test uses ASan/UBSan (QN_SANITIZE): tests shrink their token counts there."""
    cache = os.path.join(os.environ.get("QN_BUILD_DIR", ""), "CMakeCache.txt")
    try:
        with open(cache) as f:
            return any(line.strip() == "QN_SANITIZE:BOOL=ON" for line in f)
    except OSError:
        return False


def find_nginx():
    for p in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if p and os.access(p, os.X_OK):
            return p
    raise Skip("nginx not installed (scripts/install_deps.sh installs nginx-light)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=30):
    """(status, headers dict with lower-case keys, body bytes); never raises on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def kill_group(p, timeout=10):
    if p is None or p.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


class Stack:
    """quern serve + nginx; use as a context manager."""

    def __init__(self, quern_args=(), nginx=True, ready_timeout=60):
        self.quern_bin, self.model = need_env()
        self.nginx_bin = find_nginx() if nginx else None
        self.quern_args = list(quern_args)
        self.ready_timeout = ready_timeout
        self.tmp = tempfile.mkdtemp(prefix="qn_e2e_")
        self.quern = self.nginx = None
        self.quern_rc, self.final_log = None, ""
        self.quern_port = self.nginx_port = None
        self.quern_log = os.path.join(self.tmp, "quern.log")

    # --- quern ---
    def start_quern(self):
        log = open(self.quern_log, "wb")
        cmd = [self.quern_bin, "serve", self.model, "--host", "127.0.0.1", "--port", "0"] + self.quern_args
        self.quern = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.quern.poll() is not None:
                raise RuntimeError(f"quern serve exited with {self.quern.returncode}:\n{self.log()}")
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
            if m:
                self.quern_port = int(m.group(1))
                break
            time.sleep(0.02)
        else:
            raise RuntimeError("quern serve did not bind in time:\n" + self.log())
        saw_503 = False
        while time.monotonic() < deadline:
            try:
                st, _, _ = http("GET", self.direct + "/health", timeout=5)
            except OSError:
                st = None
            if st == 503:
                saw_503 = True
            if st == 200:
                return saw_503
            if self.quern.poll() is not None:
                raise RuntimeError(f"quern serve exited with {self.quern.returncode}:\n{self.log()}")
            time.sleep(0.02)
        raise RuntimeError("quern serve not ready in time:\n" + self.log())

    def log(self):
        try:
            with open(self.quern_log, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def direct(self):
        return f"http://127.0.0.1:{self.quern_port}"

    # --- nginx ---
    def start_nginx(self, client_max_body="8m"):
        d = os.path.join(self.tmp, "nginx")
        os.makedirs(os.path.join(d, "body"), exist_ok=True)
        os.makedirs(os.path.join(d, "proxy"), exist_ok=True)
        for p in (self.tmp, d, os.path.join(d, "body"), os.path.join(d, "proxy")):
            os.chmod(p, 0o777)  # nginx workers drop root privileges
        last = ""
        for _attempt in range(3):
            port = free_port()
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(tmp=d, port=port, upstream=self.quern_port, body=client_max_body))
            err = open(os.path.join(d, "stderr.log"), "wb")
            self.nginx = subprocess.Popen([self.nginx_bin, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log"),
                                           "-g", "daemon off;"], stdout=err, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
            err.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.nginx.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        self.nginx_port = port
                        return
                except OSError:
                    time.sleep(0.02)
            last = open(os.path.join(d, "stderr.log"), errors="replace").read()
            try:
                last += open(os.path.join(d, "error.log"), errors="replace").read()
            except OSError:
                pass
            kill_group(self.nginx)
            self.nginx = None
        raise RuntimeError("nginx did not start:\n" + last)

    @property
    def base(self):
        """The URL clients use: through nginx when it runs."""
        return f"http://127.0.0.1:{self.nginx_port}" if self.nginx_port else self.direct

    def __enter__(self):
        try:
            self.saw_503 = self.start_quern()
            if self.nginx_bin:
                self.start_nginx()
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        kill_group(self.nginx)
        kill_group(self.quern, timeout=30)  # SIGTERM first: the graceful path must exit 0
        self.quern_rc = self.quern.returncode if self.quern is not None else None
        self.final_log = self.log()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def shutdown_problems(self):
        """After close(): why the server's exit was not clean (exit code, sanitizer reports), or None."""
        if self.quern_rc != 0:
            return f"quern serve exited with {self.quern_rc} after SIGTERM:\n{self.final_log[-3000:]}"
        if "Sanitizer" in self.final_log or "runtime error:" in self.final_log:
            return "sanitizer report in the server log:\n" + self.final_log[-6000:]
        return None

    def __exit__(self, *exc):
        if exc[0] is not None and self.quern is not None:
            sys.stderr.write("---- quern serve log (tail) ----\n" + self.log()[-4000:] + "\n")
        self.close()
        return False


NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    client_max_body_size {body};
    client_body_buffer_size 1m;
    upstream quern {{
        server 127.0.0.1:{upstream};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://quern;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }}
    }}
}}
"""


def run(main):
    """Runs main() -> exit code, mapping Skip to 77."""
    try:
        rc = main()
    except Skip as e:
        print(f"skip: {e}")
        rc = SKIP
    sys.exit(rc if isinstance(rc, int) else 0)


def metrics(base, timeout=10):
    """name -> value for the unlabelled-or-labelled samples of /metrics (first sample of each name)."""
    st, _, body = http("GET", base + "/metrics", timeout=timeout)
    assert st == 200, st
    out = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m and m.group(1) not in out:
            out[m.group(1)] = float(m.group(3))
    return out
