# test_serve_api.py — `quern serve` end to end on the CPU with the default model, behind Debian's nginx
# (proxy_buffering off, HTTP/1.1 upstream keep-alive): the openai SDK (chat + completions, streaming with
# stream_options.include_usage, usage numbers checked against /tokenize), LiteLLM's openai/ provider, curl -N
# SSE framing and incremental delivery through the proxy, sampling extras (stop, seed, logprobs, logit_bias,
# min_tokens), and the error paths: 400 over the context, 401 without the key, 413 over the body limit,
# 404 unknown route, CORS preflight; then QUERN_API_KEY and a graceful SIGTERM on a second, direct server; flag
# errors; /health 503 while the model loads (a FIFO as the model file) and a clean exit when the load fails.
# QN_TEST_LABELS: cpu e2e
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_util as su  # noqa: E402

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm: no network at import
KEY = "sk-quern-e2e"
NAME = "smol"
CTX = 512
FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what, flush=True)
    return cond


def step(name):
    print(f"[{time.monotonic() - T0:6.2f}s] {name}", flush=True)


def auth():
    return {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def post(base, path, obj, headers=None, timeout=60):
    st, hd, body = su.http("POST", base + path, json.dumps(obj).encode(), headers or auth(), timeout)
    try:
        return st, hd, json.loads(body) if body else None
    except ValueError:
        return st, hd, body


def n_tokens(base, **req):
    st, _, body = post(base, "/tokenize", req)
    assert st == 200, (st, body)
    return body["count"]


def sse_events(raw):
    """Raw SSE bytes -> list of data payloads; asserts the framing."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), repr(text[-40:])
    out = []
    for ev in text.split("\n\n")[:-1]:
        lines = [ln for ln in ev.split("\n") if not ln.startswith(":")]  # ':' pings are comments
        if not lines:
            continue
        assert len(lines) == 1 and lines[0].startswith("data: "), repr(ev)
        out.append(lines[0][len("data: "):])
    return out


# ------------------------------------------------------------------------------------------------ SDK

def test_openai(base):
    from openai import OpenAI, BadRequestError
    client = OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=120)
    step("openai: models")
    ids = [m.id for m in client.models.list().data]
    check(ids == [NAME], f"models.list -> {ids}")

    step("openai: chat (non-stream)")
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model=NAME, messages=msgs, max_tokens=8, temperature=0)
    text = r.choices[0].message.content
    check(isinstance(text, str) and len(text) > 0, f"chat content {text!r}")
    check(r.choices[0].message.role == "assistant", "chat role")
    check(r.choices[0].finish_reason in ("stop", "length"), f"finish {r.choices[0].finish_reason}")
    n_prompt = n_tokens(base, messages=msgs, add_generation_prompt=True)
    check(r.usage.prompt_tokens == n_prompt, f"chat prompt_tokens {r.usage.prompt_tokens} != /tokenize {n_prompt}")
    check(1 <= r.usage.completion_tokens <= 8, f"chat completion_tokens {r.usage.completion_tokens}")
    check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "chat total_tokens")
    check(r.id.startswith("chatcmpl-") and r.model == NAME and r.object == "chat.completion", "chat ids")

    step("openai: chat (stream, include_usage)")
    chunks = list(client.chat.completions.create(model=NAME, messages=msgs, max_tokens=8, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    check(len(chunks) >= 3, f"{len(chunks)} chunks")
    check(chunks[0].choices and chunks[0].choices[0].delta.role == "assistant", "first delta carries the role")
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(content == text, f"stream {content!r} != non-stream {text!r}")
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finals == [r.choices[0].finish_reason], f"finish reasons {finals}")
    check(chunks[-1].choices == [] and chunks[-1].usage is not None, "last chunk: choices [] + usage")
    check(all(c.usage is None for c in chunks[:-1]), "usage only in the last chunk")
    u = chunks[-1].usage
    check((u.prompt_tokens, u.completion_tokens) == (r.usage.prompt_tokens, r.usage.completion_tokens),
          f"stream usage {u} vs {r.usage}")

    step("openai: completions (non-stream + stream, ignore_eos)")
    prompt = "The capital of France is"
    rc = client.completions.create(model=NAME, prompt=prompt, max_tokens=10, temperature=0,
                                   extra_body={"ignore_eos": True})
    ctext = rc.choices[0].text
    n_p = n_tokens(base, prompt=prompt)
    check(rc.usage.prompt_tokens == n_p, f"completions prompt_tokens {rc.usage.prompt_tokens} != {n_p}")
    check(rc.usage.completion_tokens == 10 and rc.choices[0].finish_reason == "length",
          f"completions usage {rc.usage} finish {rc.choices[0].finish_reason}")
    check("Paris" in ctext, f"greedy continuation {ctext!r}")
    sc = list(client.completions.create(model=NAME, prompt=prompt, max_tokens=10, temperature=0, stream=True,
                                        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    stext = "".join(c.choices[0].text for c in sc if c.choices)
    check(stext == ctext, f"completions stream {stext!r} != {ctext!r}")
    check(sc[-1].usage is not None and sc[-1].usage.completion_tokens == 10, f"stream usage {sc[-1].usage}")
    n_content = sum(1 for c in sc if c.choices and c.choices[0].text)
    check(2 <= n_content <= 10, f"{n_content} content chunks for 10 tokens")

    step("openai: stop string, seed, logprobs, logit_bias, min_tokens")
    word = ctext.split()[1] if len(ctext.split()) > 1 else None
    if check(word is not None, f"need two words in {ctext!r}"):
        rs = client.completions.create(model=NAME, prompt=prompt, max_tokens=10, temperature=0, stop=[word])
        check(rs.choices[0].finish_reason == "stop" and word not in rs.choices[0].text
              and ctext.startswith(rs.choices[0].text), f"stop {word!r}: {rs.choices[0].text!r}")
        check(getattr(rs.choices[0], "stop_reason", None) == word or
              (rs.choices[0].model_extra or {}).get("stop_reason") == word, "stop_reason names the string")
        ri = client.completions.create(model=NAME, prompt=prompt, max_tokens=10, temperature=0, stop=[word],
                                       extra_body={"include_stop_str_in_output": True})
        check(ri.choices[0].text.endswith(word), f"include_stop_str_in_output: {ri.choices[0].text!r}")
    a = client.completions.create(model=NAME, prompt="Once upon a time", max_tokens=6, temperature=0.9, seed=1234)
    b = client.completions.create(model=NAME, prompt="Once upon a time", max_tokens=6, temperature=0.9, seed=1234)
    check(a.choices[0].text == b.choices[0].text, "same seed, same text")
    rl = client.completions.create(model=NAME, prompt=prompt, max_tokens=4, temperature=0, logprobs=2,
                                   extra_body={"ignore_eos": True})
    lp = rl.choices[0].logprobs
    check(lp is not None and len(lp.tokens) == 4 and len(lp.token_logprobs) == 4 and
          all(len(t) >= 2 for t in lp.top_logprobs) and all(x <= 0 for x in lp.token_logprobs), f"logprobs {lp}")
    first = n_tokens(base, prompt=ctext, add_special_tokens=False)
    st, _, tk = post(base, "/tokenize", {"prompt": ctext, "add_special_tokens": False})
    if check(st == 200 and first >= 1, "tokenize the continuation"):
        tok0 = tk["tokens"][0]
        rb = client.completions.create(model=NAME, prompt=prompt, max_tokens=3, temperature=0,
                                       logit_bias={str(tok0): -100})
        check(not rb.choices[0].text.startswith(ctext[:max(1, len(ctext.split()[0]) + 1)]),
              f"logit_bias -100 on {tok0}: {rb.choices[0].text!r} vs {ctext!r}")
    st, _, sp = post(base, "/tokenize", {"prompt": "<|im_start|>", "add_special_tokens": False})
    if check(st == 200 and len(sp["tokens"]) == 1, f"<|im_start|> is one special token: {sp}"):
        im = sp["tokens"][0]
        body = {"prompt": prompt, "max_tokens": 1, "temperature": 0, "logit_bias": {str(im): 100}, "ignore_eos": True}
        _, _, d0 = post(base, "/v1/completions", body)
        _, _, d1 = post(base, "/v1/completions", dict(body, skip_special_tokens=False))
        check(d0["choices"][0]["text"] == "" and d1["choices"][0]["text"] == "<|im_start|>",
              f"skip_special_tokens: {d0['choices'][0]['text']!r} / {d1['choices'][0]['text']!r}")
        x = tk["tokens"][0] if st == 200 else 0
        _, _, d2 = post(base, "/v1/completions", {"prompt": prompt, "max_tokens": 5, "temperature": 0,
                                                  "logit_bias": {str(x): 100}, "stop_token_ids": [x]})
        ch = d2["choices"][0]
        check(ch["finish_reason"] == "stop" and ch["stop_reason"] == x and d2["usage"]["completion_tokens"] == 1,
              f"stop_token_ids [{x}]: {d2}")
        eos = 2  # <|im_end|> in SmolLM2's vocabulary, an end-of-generation token
        _, _, d3 = post(base, "/v1/completions", {"prompt": prompt, "max_tokens": 5, "temperature": 0,
                                                  "logit_bias": {str(eos): 100}})
        ch = d3["choices"][0]
        check(ch["finish_reason"] == "stop" and ch["stop_reason"] is None and ch["text"] == "",
              f"EOS: finish stop, stop_reason null: {d3}")
    hi = [{"role": "user", "content": "Say hi."}]
    r0 = client.chat.completions.create(model=NAME, messages=hi, max_tokens=20, temperature=0)
    if r0.choices[0].finish_reason == "stop" and r0.usage.completion_tokens < 15:
        k = r0.usage.completion_tokens + 5
        r1 = client.chat.completions.create(model=NAME, messages=hi, max_tokens=20, temperature=0,
                                            extra_body={"min_tokens": k})
        check(r1.usage.completion_tokens >= k, f"min_tokens {k}: got {r1.usage.completion_tokens}")

    step("openai: 400 over the context")
    try:
        client.completions.create(model=NAME, prompt=prompt, max_tokens=CTX + 10)
        check(False, "prompt + max_tokens > context must fail")
    except BadRequestError as e:
        body = e.body if isinstance(e.body, dict) else {}
        check(e.status_code == 400 and body.get("type") == "exceed_context_size_error", f"400 body {e.body}")
    return text, ctext


def test_litellm(base, want_chat):
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
    step("litellm: import")
    import litellm
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    step("litellm: completion")
    r = litellm.completion(model=f"openai/{NAME}", api_base=base + "/v1", api_key=KEY, messages=msgs, max_tokens=8,
                           temperature=0, num_retries=0, timeout=120)
    check(r.choices[0].message.content == want_chat, f"litellm {r.choices[0].message.content!r} != {want_chat!r}")
    check(r.usage.completion_tokens >= 1, "litellm usage")
    step("litellm: stream")
    parts = []
    for ch in litellm.completion(model=f"openai/{NAME}", api_base=base + "/v1", api_key=KEY, messages=msgs,
                                 max_tokens=8, temperature=0, stream=True, num_retries=0, timeout=120):
        if ch.choices and ch.choices[0].delta and ch.choices[0].delta.content:
            parts.append(ch.choices[0].delta.content)
    check("".join(parts) == want_chat, f"litellm stream {''.join(parts)!r} != {want_chat!r}")


# ------------------------------------------------------------------------------------------------ curl / raw

def test_curl_sse(stack, want):
    step("curl -N: SSE framing through nginx")
    body = json.dumps({"model": NAME, "prompt": "The capital of France is", "max_tokens": 10, "temperature": 0,
                       "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}})
    hdr = os.path.join(stack.tmp, "curl_headers.txt")
    out = subprocess.run(["curl", "-sS", "-N", "--max-time", "120", "-D", hdr, "-H", f"Authorization: Bearer {KEY}",
                          "-H", "Content-Type: application/json", "-H", "X-Request-Id: e2e-curl-1",
                          "-d", body, stack.base + "/v1/completions"], capture_output=True, timeout=150)
    check(out.returncode == 0, f"curl rc {out.returncode} {out.stderr!r}")
    headers = open(hdr).read().lower()
    check("content-type: text/event-stream" in headers, "text/event-stream")
    check("x-request-id: e2e-curl-1" in headers, "X-Request-Id echoed through nginx")
    evs = sse_events(out.stdout)
    check(evs[-1] == "[DONE]", "ends with data: [DONE]")
    objs = [json.loads(e) for e in evs[:-1]]
    check(all(o["id"] == objs[0]["id"] and o["object"] == "text_completion" for o in objs), "one id, one object")
    text = "".join(o["choices"][0]["text"] for o in objs if o["choices"])
    check(text == want, f"curl text {text!r} != {want!r}")
    check(objs[-1]["choices"] == [] and objs[-1]["usage"]["completion_tokens"] == 10, "usage chunk")
    fins = [o["choices"][0]["finish_reason"] for o in objs if o["choices"]]
    check(fins[-1] == "length" and all(f is None for f in fins[:-1]), f"finish_reason only last: {fins}")

    step("SSE headers direct (nginx consumes X-Accel-Buffering)")
    out = subprocess.run(["curl", "-sS", "-N", "--max-time", "60", "-D", "-", "-H", f"Authorization: Bearer {KEY}",
                          "-H", "Content-Type: application/json", "-d",
                          json.dumps({"prompt": "Hi", "max_tokens": 2, "stream": True}),
                          stack.direct + "/v1/completions"], capture_output=True, timeout=90)
    h = out.stdout.decode(errors="replace").lower()
    check("x-accel-buffering: no" in h and "cache-control: no-cache" in h, "SSE anti-buffering headers")

    step("incremental delivery through nginx (proxy_buffering off)")
    req = json.dumps({"prompt": "Once upon a time", "max_tokens": 16, "temperature": 0, "ignore_eos": True,
                      "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", stack.nginx_port), timeout=120)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(req)}\r\nConnection: close\r\n\r\n".encode() + req)
    arrivals, buf = [], b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        n_before = buf.count(b"data: ")
        buf += d
        arrivals += [time.monotonic()] * (buf.count(b"data: ") - n_before)
    s.close()
    check(b"data: [DONE]" in buf and len(arrivals) >= 10, f"{len(arrivals)} events")
    distinct = len({round(t, 3) for t in arrivals})
    check(distinct >= 5, f"events arrived in {distinct} bursts: buffered somewhere")


def test_errors(stack):
    base = stack.base
    step("errors: 401 / 404 / 413 / CORS / health")
    st, _, body = post(base, "/v1/completions", {"prompt": "x", "max_tokens": 1}, {"Content-Type": "application/json"})
    check(st == 401 and body["error"]["type"] == "authentication_error", f"no key -> {st} {body}")
    st, _, _ = post(base, "/v1/models", {}, {"Authorization": "Bearer wrong"})
    check(st == 401, f"wrong key -> {st}")
    st, _, _ = su.http("GET", base + "/v1/models", headers={"Authorization": "Bearer second-key"})
    check(st == 200, f"second --api-key -> {st}")
    st, _, _ = su.http("GET", base + "/health")
    check(st == 200, f"/health without a key -> {st}")
    st, _, body = su.http("GET", base + "/v1/no-such-route", headers=auth())
    check(st == 404 and json.loads(body)["error"]["type"] == "not_found_error", f"unknown route -> {st} {body}")
    big = json.dumps({"prompt": "x" * (100 * 1024), "max_tokens": 1}).encode()
    st, _, body = su.http("POST", base + "/v1/completions", big, auth())
    check(st == 413 and json.loads(body)["error"]["code"] == 413, f"100 KiB body over --max-body-bytes 64K -> {st}")
    st, hd, _ = su.http("OPTIONS", base + "/v1/chat/completions",
                        headers={"Origin": "http://example.com", "Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers": "authorization, content-type"})
    check(st in (200, 204) and hd.get("access-control-allow-origin") == "*" and
          "POST" in hd.get("access-control-allow-methods", "") and
          "authorization" in hd.get("access-control-allow-headers", "").lower(), f"preflight -> {st} {hd}")
    st, _, body = post(base, "/v1/completions", {"prompt": "Hello", "max_tokens": CTX})
    check(st == 400 and body["error"]["type"] == "exceed_context_size_error", f"context -> {st} {body}")
    st, _, body = post(base, "/v1/chat/completions", {"messages": "nope"})
    check(st == 400 and body["error"]["type"] == "invalid_request_error", f"bad messages -> {st}")
    m = su.metrics(base)
    check("quern:num_requests_running" in m and "vllm:kv_cache_usage_perc" in m, "metrics names (+ vllm compat)")


def test_env_key_and_sigterm():
    step("second server: QUERN_API_KEY, SIGTERM")
    env = dict(os.environ, QUERN_API_KEY="env-key-123")
    old = os.environ.get("QUERN_API_KEY")
    os.environ["QUERN_API_KEY"] = env["QUERN_API_KEY"]
    try:
        st2 = su.Stack(["--kv-cache-mem", "32M", "-c", "256"], nginx=False)
        with st2:
            check("API key required" in st2.log(), "startup line says a key is required")
            s1, _, _ = su.http("GET", st2.direct + "/v1/models")
            s2, _, _ = su.http("GET", st2.direct + "/v1/models", headers={"Authorization": "Bearer env-key-123"})
            check((s1, s2) == (401, 200), f"QUERN_API_KEY: {s1} {s2}")
            os.killpg(st2.quern.pid, signal.SIGTERM)
            try:
                rc = st2.quern.wait(timeout=20)
            except subprocess.TimeoutExpired:
                rc = None
            check(rc == 0 and "stopped" in st2.log() and "Sanitizer" not in st2.log(), f"SIGTERM -> rc {rc}")
    finally:
        if old is None:
            os.environ.pop("QUERN_API_KEY", None)
        else:
            os.environ["QUERN_API_KEY"] = old


def test_cli_and_loading():
    """Flag errors, and readiness while the model is still loading: a FIFO as the model file keeps the loader
    blocked in open() until we write to it, so /health is deterministically 503 meanwhile."""
    step("CLI errors; /health 503 while loading (FIFO model)")
    quern, _ = su.need_env()
    for args, want in ((["--device", "tpu"], "is not auto, cpu, cuda"), (["-tp", "0"], "must be >= 1"),
                       (["--kv-cache-mem", "12x"], "invalid size"), (["--no-such-flag"], "unknown flag"),
                       (["--max-num-batched-tokens", "-1"], "--max-num-batched-tokens (0: auto)")):
        r = subprocess.run([quern, "serve", "--port", "0"] + args, capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and want in r.stderr, f"quern serve {args}: rc {r.returncode} {r.stderr!r}")
    tmp = __import__("tempfile").mkdtemp(prefix="qn_fifo_")
    fifo = os.path.join(tmp, "model.gguf")
    os.mkfifo(fifo)
    p = subprocess.Popen([quern, "serve", fifo, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True, text=True)
    try:
        line, t0 = "", time.monotonic()
        while "listening on" not in line and time.monotonic() - t0 < 30:
            line = p.stdout.readline()
        port = int(line.split("127.0.0.1:")[1].split()[0]) if "listening on" in line else None
        if check(port is not None, f"listening line: {line!r}"):
            base = f"http://127.0.0.1:{port}"
            st, _, body = su.http("GET", base + "/health")
            check(st == 503 and json.loads(body)["error"]["type"] == "unavailable_error", f"/health while loading: {st}")
            st, hd, _ = su.http("POST", base + "/v1/completions", json.dumps({"prompt": "x"}).encode(),
                                {"Content-Type": "application/json"})
            check(st == 503 and "retry-after" in hd, f"completions while loading: {st}")
        with open(fifo, "wb"):  # unblocks the loader, which sees an empty file and fails to load it
            pass
        rc = p.wait(timeout=30)
        rest = p.stdout.read()
        check(rc == 1 and "stopped" in rest, f"load failure -> rc {rc}: {rest!r}")
    finally:
        su.kill_group(p)
        p.stdout.close()
        __import__("shutil").rmtree(tmp, ignore_errors=True)


def main():
    global T0
    T0 = time.monotonic()
    try:
        import openai  # noqa: F401
    except ImportError:
        raise su.Skip("openai not installed in the venv (scripts/setup_venv.sh)")
    args = ["--served-model-name", NAME, "--api-key", KEY, "--api-key", "second-key", "-c", str(CTX),
            "--max-body-bytes", "64K", "--allowed-origins", "*", "--kv-cache-mem", "64M", "--metrics-compat", "vllm"]
    with su.Stack(args) as stack:
        step(f"quern on {stack.direct}, nginx on {stack.base} (503 seen before ready: {stack.saw_503})")
        chat_text, comp_text = test_openai(stack.base)
        test_curl_sse(stack, comp_text)
        test_errors(stack)
        try:
            import litellm  # noqa: F401
            have_litellm = True
        except ImportError:
            have_litellm = False
            print("note: litellm not installed, skipped")
        if have_litellm:
            test_litellm(stack.base, chat_text)
    bad = stack.shutdown_problems()
    check(bad is None, f"clean shutdown: {bad}")
    test_env_key_and_sigterm()
    test_cli_and_loading()
    step(f"done: {len(FAILS)} failure(s)")
    return 1 if FAILS else 0


T0 = 0.0
if __name__ == "__main__":
    su.run(main)
