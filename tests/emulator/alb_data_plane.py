"""
A local data plane for the emulator's Application Load Balancers
================================================================

Section 10 of README.md. Every HTTP/HTTPS listener of every `application` load
balancer that moto holds answers real (plain) HTTP on a loopback port of its own:

  GET    /_greenlight/load-balancers  -> {"<listener arn>": "http://127.0.0.1:<port>", ...}
  GET    /_greenlight/alb-stats       -> per target group / per listener counters
  DELETE /_greenlight/alb-stats       -> the same answer, then the counters start over

A request is routed as an ALB routes it (ELB docs "Listener rules for your Application
Load Balancer", "Target groups for your Application Load Balancers", "Sticky sessions",
"Health checks for Application Load Balancer target groups", "Troubleshoot your
Application Load Balancers"):

  1. the listener's rules by ascending priority, then its default action; all conditions
     of a rule must match, any value of one condition;
  2. the matched rule's actions in `Order`: authenticate-oidc / authenticate-cognito
     (stand-in: 401 unless `X-Greenlight-Test-Authenticated: true`), then fixed-response,
     redirect or forward (weighted target groups, target-group stickiness by the
     AWSALBTG cookie);
  3. within the group: round robin over healthy targets (the emulator's own health
     states); fail open over all registered targets when none is healthy; 503 when none
     is registered; the request is proxied with X-Forwarded-* and X-Amzn-Trace-Id;
     refused -> 502, timeout -> 504.

This module never imports greenlight_emulator (which runs as `__main__`); the emulator
hands it its state lock in start(). Routing decisions read moto's models under that lock;
the proxying itself happens outside it.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import http.server
import ipaddress
import json
import logging
import os
import random
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from moto.elbv2.models import elbv2_backends

import cloudwatch_metrics
from cloudwatch_metrics import Source

log = logging.getLogger("greenlight-emulator.alb")

LOAD_BALANCERS_PATH = "/_greenlight/load-balancers"
STATS_PATH = "/_greenlight/alb-stats"
ADMIN_PATHS = (LOAD_BALANCERS_PATH, STATS_PATH)

AUTH_HEADER = "X-Greenlight-Test-Authenticated"
STICKY_COOKIE = "AWSALBTG"
MAX_BODY = 1024 * 1024  # request bodies above this are refused (413)
MAX_RESPONSE = 16 * 1024 * 1024  # a target answer above this is a 502
RECENT_SAMPLES = 1024  # response times kept per target group
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection",
}


@dataclass
class Settings:
    lock: Any = None  # the emulator's STATE_LOCK
    seed: int = 0
    proxy_timeout: float = 3.0
    bind_host: str = "127.0.0.1"


SETTINGS = Settings()


# ---------------------------------------------------------------------------
# Counters (for the later CloudWatch metrics work). STATS_LOCK is never held while
# taking the state lock.
# ---------------------------------------------------------------------------


@dataclass
class GroupStats:
    requests: int = 0
    target_2xx: int = 0
    target_3xx: int = 0
    target_4xx: int = 0
    target_5xx: int = 0
    elb_5xx: int = 0
    times: list[float] = field(default_factory=list)  # the most recent, seconds
    time_count: int = 0
    time_sum: float = 0.0
    time_max: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "target_2xx": self.target_2xx,
            "target_3xx": self.target_3xx, "target_4xx": self.target_4xx,
            "target_5xx": self.target_5xx, "elb_5xx": self.elb_5xx,
            "target_response_time": {
                "count": self.time_count, "sum": round(self.time_sum, 6),
                "max": round(self.time_max, 6),
                "recent": [round(t, 6) for t in self.times],
            },
        }


@dataclass
class ListenerStats:
    requests: int = 0
    elb_4xx: int = 0
    elb_5xx: int = 0
    fixed_response: int = 0
    redirect: int = 0
    authenticate_denied: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


STATS_LOCK = threading.Lock()
GROUP_STATS: dict[str, GroupStats] = {}
LISTENER_STATS: dict[str, ListenerStats] = {}


def _group_stats(arn: str) -> GroupStats:
    return GROUP_STATS.setdefault(arn, GroupStats())


def _listener_stats(arn: str) -> ListenerStats:
    return LISTENER_STATS.setdefault(arn, ListenerStats())


def stats_json(reset: bool = False) -> dict[str, Any]:
    with STATS_LOCK:
        doc = {
            "target_groups": {arn: s.to_json() for arn, s in GROUP_STATS.items()},
            "listeners": {arn: s.to_json() for arn, s in LISTENER_STATS.items()},
        }
        if reset:
            GROUP_STATS.clear()
            LISTENER_STATS.clear()
        return doc


def _count_target_answer(tg_arn: str, status: int, elapsed: float) -> None:
    with STATS_LOCK:
        s = _group_stats(tg_arn)
        bucket = f"target_{status // 100}xx"
        if hasattr(s, bucket):
            setattr(s, bucket, getattr(s, bucket) + 1)
        s.time_count += 1
        s.time_sum += elapsed
        s.time_max = max(s.time_max, elapsed)
        s.times.append(elapsed)
        del s.times[:-RECENT_SAMPLES]


# ---------------------------------------------------------------------------
# Condition matching ("Listener rules": condition types)
# ---------------------------------------------------------------------------


def _wildcard(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    """`*` = any characters (also none), `?` = exactly one; everything else literal."""
    regex = "".join(
        ".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern
    )
    return re.compile(rf"\A{regex}\Z", 0 if case_sensitive else re.IGNORECASE | re.DOTALL)


def _values(condition: dict[str, Any], config_key: str) -> list[Any]:
    config = condition.get(config_key) or {}
    values = config.get("Values")
    if values is None:
        values = condition.get("Values")  # the legacy form: {"Field", "Values"}
    return list(values or [])


@dataclass
class Incoming:
    method: str
    path: str  # without the query
    query: str
    headers: list[tuple[str, str]]
    client_ip: str

    def header_values(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    @property
    def host(self) -> str:
        host = (self.header_values("Host") or [""])[0].strip()
        if host.startswith("["):
            return host.split("]", 1)[0] + "]"
        return host.rsplit(":", 1)[0] if ":" in host else host


def condition_matches(condition: dict[str, Any], req: Incoming) -> bool:
    kind = condition.get("Field")
    if kind == "host-header":
        return any(_wildcard(str(v), False).match(req.host) for v in _values(condition, "HostHeaderConfig"))
    if kind == "path-pattern":
        return any(_wildcard(str(v), True).match(req.path) for v in _values(condition, "PathPatternConfig"))
    if kind == "http-header":
        config = condition.get("HttpHeaderConfig") or {}
        present = req.header_values(str(config.get("HttpHeaderName") or ""))
        return any(
            _wildcard(str(v), False).match(h) for v in config.get("Values") or [] for h in present
        )
    if kind == "http-request-method":
        return req.method in [str(v) for v in _values(condition, "HttpRequestMethodConfig")]
    if kind == "query-string":
        pairs = urllib.parse.parse_qsl(req.query, keep_blank_values=True)
        for kv in _values(condition, "QueryStringConfig"):
            key, value = kv.get("Key"), urllib.parse.unquote(str(kv.get("Value", "")))
            for k, v in pairs:
                if (key is None or _wildcard(urllib.parse.unquote(str(key)), False).match(k)) and \
                        _wildcard(value, False).match(v):
                    return True
        return False
    if kind == "source-ip":
        try:
            client = ipaddress.ip_address(req.client_ip)
        except ValueError:
            return False
        for cidr in _values(condition, "SourceIpConfig"):
            try:
                if client in ipaddress.ip_network(str(cidr), strict=False):
                    return True
            except ValueError:
                continue
        return False
    return False  # unknown condition type: never matches


def rule_matches(conditions: list[dict[str, Any]], req: Incoming) -> bool:
    return all(condition_matches(c, req) for c in conditions or [])


# ---------------------------------------------------------------------------
# Routing decisions (taken under the emulator's state lock)
# ---------------------------------------------------------------------------


@dataclass
class Decision:
    kind: str  # "fixed" | "redirect" | "proxy" | "elb-error"
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    target_group: str | None = None
    target: tuple[str, int] | None = None  # (ip, port)
    set_cookie: str | None = None
    extra_headers: list[tuple[str, str]] = field(default_factory=list)  # to the target


def _elb_error(status: int, target_group: str | None = None) -> Decision:
    reason = http.client.responses.get(status, "Error")
    body = (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n").encode()
    return Decision("elb-error", status, [("Content-Type", "text/html")], body, target_group)


def _find_listener(arn: str) -> tuple[Any, Any, Any] | None:
    """(backend, load balancer, listener) for a listener ARN."""
    for account_backends in list(elbv2_backends.values()):
        for backend in list(account_backends.values()):
            for lb in list(backend.load_balancers.values()):
                listener = lb.listeners.get(arn)
                if listener is not None:
                    return backend, lb, listener
    return None


def _sorted_rules(listener: Any) -> list[Any]:
    rules = [r for r in listener.rules.values() if not getattr(r, "is_default", False)]
    rules.sort(key=lambda r: int(r.priority))
    defaults = [r for r in listener.rules.values() if getattr(r, "is_default", False)]
    return rules + defaults


def _ordered(actions: list[Any]) -> list[dict[str, Any]]:
    datas = [getattr(a, "data", a) or {} for a in actions or []]
    return sorted(datas, key=lambda d: int(d.get("Order") or 50001))


@dataclass
class ListenerRuntime:
    arn: str
    rng: random.Random
    server: "ListenerServer | None" = None
    url: str = ""


RUNTIMES: dict[str, ListenerRuntime] = {}  # guarded by the state lock
ROUND_ROBIN: dict[str, int] = {}  # target group arn -> next index (state lock)


def _encode_cookie(tg_arn: str, expires: float) -> str:
    raw = json.dumps([tg_arn, int(expires)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cookie(value: str) -> tuple[str, float] | None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        arn, expires = json.loads(raw)
        return str(arn), float(expires)
    except (ValueError, TypeError, binascii.Error):
        return None


def _cookies(req: Incoming) -> dict[str, str]:
    out: dict[str, str] = {}
    for header in req.header_values("Cookie"):
        for part in header.split(";"):
            if "=" in part:
                k, v = part.split("=", 1)
                out.setdefault(k.strip(), v.strip())
    return out


def _choose_group(config: dict[str, Any], req: Incoming, rng: random.Random) -> tuple[str | None, str | None]:
    """(target group arn, Set-Cookie value or None) for a forward action."""
    forward = config.get("ForwardConfig") or {}
    entries = [(e["TargetGroupArn"], int(e.get("Weight", 1) if e.get("Weight") is not None else 1))
               for e in forward.get("TargetGroups") or [] if e.get("TargetGroupArn")]
    if not entries and config.get("TargetGroupArn"):
        entries = [(config["TargetGroupArn"], 1)]
    sticky = forward.get("TargetGroupStickinessConfig") or {}
    enabled = str(sticky.get("Enabled", False)).lower() == "true"
    chosen = None
    now = time.time()
    if enabled:
        cookie = _cookies(req).get(STICKY_COOKIE)
        decoded = _decode_cookie(cookie) if cookie else None
        if decoded and decoded[1] > now and decoded[0] in [arn for arn, _ in entries]:
            chosen = decoded[0]  # a valid cookie keeps its group, whatever the weights
    if chosen is None:
        total = sum(w for _, w in entries if w > 0)
        if total <= 0:
            return None, None
        draw = rng.uniform(0, total)
        for arn, weight in entries:
            if weight <= 0:
                continue
            chosen = arn
            draw -= weight
            if draw < 0:
                break
    set_cookie = None
    if enabled and chosen:
        duration = int(sticky.get("DurationSeconds") or 3600)
        expires = now + duration
        set_cookie = (f"{STICKY_COOKIE}={_encode_cookie(chosen, expires)}; "
                      f"Expires={time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime(expires))}; Path=/")
    return chosen, set_cookie


def _choose_target(backend: Any, tg_arn: str) -> tuple[str, int] | None:
    """Round robin over healthy targets; when none is healthy, fail open over the unhealthy
    ones; None (503) when there is neither. Targets still `initial` get nothing ("starts
    routing requests to the target as soon as ... the target passes the initial health
    checks"), nor do `unused` ones (instance stopped or terminated). Draining targets are
    no longer in tg.targets, so they get no new requests."""
    tg = backend.target_groups.get(tg_arn)
    if tg is None:
        return None
    healthy, fail_open = [], []
    for tid in sorted(tg.targets):
        target = tg.targets[tid]
        state = tg.health_for(target, backend.ec2_backend).status
        if tid.startswith("i-"):
            instance = backend.ec2_backend.get_instance_by_id(tid)
            ip = getattr(instance, "private_ip_address", None)
        else:
            ip = tid  # target type ip
        if not ip:
            continue
        address = (ip, int(target.get("Port") or tg.port))
        if state in ("healthy", "unavailable"):  # unavailable: health checks disabled
            healthy.append(address)
        elif state == "unhealthy":
            fail_open.append(address)
    pool = healthy or fail_open
    if not pool:
        return None
    n = ROUND_ROBIN.get(tg_arn, 0)
    ROUND_ROBIN[tg_arn] = n + 1
    return pool[n % len(pool)]


def _redirect(config: dict[str, Any], req: Incoming, listener: Any) -> Decision:
    listener_protocol = (listener.protocol or "HTTP").lower()
    values = {
        "#{protocol}": listener_protocol,
        "#{host}": req.host,
        "#{port}": str(listener.port),
        "#{path}": req.path.lstrip("/"),
        "#{query}": req.query,
    }

    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    protocol = fill(str(config.get("Protocol") or "#{protocol}")).lower()
    host = fill(str(config.get("Host") or "#{host}"))
    port = fill(str(config.get("Port") or "#{port}"))
    path = fill(str(config.get("Path") or "/#{path}"))
    query = fill(str(config.get("Query") if config.get("Query") is not None else "#{query}"))
    location = f"{protocol}://{host}:{port}{path if path.startswith('/') else '/' + path}"
    if query:
        location += "?" + query
    status = 301 if str(config.get("StatusCode") or "HTTP_301").upper() == "HTTP_301" else 302
    return Decision("redirect", status, [("Location", location), ("Content-Type", "text/html")], b"")


def decide(listener_arn: str, req: Incoming) -> tuple[Decision, Any]:
    """The routing decision for one request (state lock held). Also returns the listener."""
    found = _find_listener(listener_arn)
    runtime = RUNTIMES.get(listener_arn)
    if found is None or runtime is None:
        return _elb_error(503), None
    backend, _, listener = found
    actions: list[dict[str, Any]] = []
    for rule in _sorted_rules(listener):
        if getattr(rule, "is_default", False) or rule_matches(rule.conditions, req):
            actions = _ordered(rule.actions)
            break
    for action in actions:
        kind = action.get("Type")
        if kind in ("authenticate-oidc", "authenticate-cognito"):
            key = "AuthenticateOidcConfig" if kind == "authenticate-oidc" else "AuthenticateCognitoConfig"
            on_unauth = str((action.get(key) or {}).get("OnUnauthenticatedRequest") or "authenticate")
            authed = any(v.strip().lower() == "true" for v in req.header_values(AUTH_HEADER))
            if not authed and on_unauth.lower() != "allow":
                d = _elb_error(401)
                d.kind = "auth-denied"
                return d, listener
            continue
        if kind == "fixed-response":
            config = action.get("FixedResponseConfig") or {}
            return Decision(
                "fixed", int(config.get("StatusCode") or 200),
                [("Content-Type", str(config.get("ContentType") or "text/plain"))],
                str(config.get("MessageBody") or "").encode(),
            ), listener
        if kind == "redirect":
            return _redirect(action.get("RedirectConfig") or {}, req, listener), listener
        if kind == "forward":
            tg_arn, cookie = _choose_group(action, req, runtime.rng)
            if tg_arn is None:
                return _elb_error(503), listener
            target = _choose_target(backend, tg_arn)
            if target is None:
                d = _elb_error(503, tg_arn)
            else:
                d = Decision("proxy", target_group=tg_arn, target=target)
            d.set_cookie = cookie
            return d, listener
    return _elb_error(503), listener  # no terminal action (should not happen)


# ---------------------------------------------------------------------------
# The listener servers
# ---------------------------------------------------------------------------


def _trace_id(existing: list[str]) -> str:
    own = f"1-{int(time.time()):08x}-{os.urandom(12).hex()}"
    if existing and "Root=" in existing[0]:
        return f"{existing[0]};Self={own}"
    return f"Root={own}"


class ListenerHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # the ALB's default idle timeout

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("listener %s: " + fmt, self.server.listener_arn, *args)

    def _read_body(self) -> bytes | None:
        """The request body (None: too large)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size = int((self.rfile.readline(1024).split(b";")[0].strip() or b"0"), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return body
                if len(body) + size > MAX_BODY:
                    self.close_connection = True
                    return None
                body += self.rfile.read(size)
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            # Read what the client is sending (up to a bound) before answering 413: a client
            # that writes its whole body before reading would otherwise meet a closed socket
            # (a broken pipe) instead of the answer.
            left = min(length, 8 * MAX_BODY)
            while left > 0:
                chunk = self.rfile.read(min(left, 64 * 1024))
                if not chunk:
                    break
                left -= len(chunk)
            self.close_connection = True
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response_only(status)
        names = {name.lower() for name, _ in headers}
        if "server" not in names:  # the ALB's own answers; a target's Server passes through
            self.send_header("Server", "awselb/2.0")
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        for name, value in headers:
            if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                continue
            self.send_header(name, value)
        length = str(len(body))
        if self.command == "HEAD":  # a target's answer to HEAD keeps its Content-Length
            length = next((v for k, v in headers if k.lower() == "content-length"), length)
        self.send_header("Content-Length", length)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        arn = self.server.listener_arn
        split = urllib.parse.urlsplit(self.path)
        req = Incoming(
            method=self.command,
            path=split.path or "/",
            query=split.query,
            headers=list(self.headers.items()),
            client_ip=self.client_address[0],
        )
        body = self._read_body()
        with STATS_LOCK:
            _listener_stats(arn).requests += 1
        if body is None:
            with STATS_LOCK:
                _listener_stats(arn).elb_4xx += 1
            d = _elb_error(413)
            cloudwatch_metrics.record(arn, None, Source.ELB, d.status)
            self._send(d.status, d.headers, d.body)
            return
        with SETTINGS.lock:
            decision, listener = decide(arn, req)
            protocol = (getattr(listener, "protocol", None) or "HTTP").lower()
            listener_port = str(getattr(listener, "port", "") or self.server.server_port)
        cookie_headers = [("Set-Cookie", decision.set_cookie)] if decision.set_cookie else []
        if decision.target_group:
            with STATS_LOCK:
                _group_stats(decision.target_group).requests += 1
        if decision.kind != "proxy":
            with STATS_LOCK:
                ls = _listener_stats(arn)
                if decision.kind == "fixed":
                    ls.fixed_response += 1
                elif decision.kind == "redirect":
                    ls.redirect += 1
                elif decision.kind == "auth-denied":
                    ls.authenticate_denied += 1
                    ls.elb_4xx += 1
                elif decision.status >= 500:
                    ls.elb_5xx += 1
                    if decision.target_group:
                        _group_stats(decision.target_group).elb_5xx += 1
            cloudwatch_metrics.record(arn, decision.target_group, Source.ELB, decision.status)
            self._send(decision.status, decision.headers + cookie_headers, decision.body)
            return
        status, headers, answer = self._proxy(req, decision, body, protocol, listener_port)
        self._send(status, headers + cookie_headers, answer)

    def _proxy(self, req: Incoming, decision: Decision, body: bytes, protocol: str,
               listener_port: str) -> tuple[int, list[tuple[str, str]], bytes]:
        ip, port = decision.target
        tg_arn = decision.target_group
        headers = [(k, v) for k, v in req.headers
                   if k.lower() not in HOP_BY_HOP and k.lower() not in (
                       "content-length", "expect", "x-forwarded-for", "x-forwarded-proto",
                       "x-forwarded-port", "x-amzn-trace-id")]
        forwarded_for = ", ".join(req.header_values("X-Forwarded-For") + [req.client_ip])
        headers += [
            ("X-Forwarded-For", forwarded_for),
            ("X-Forwarded-Proto", protocol),
            ("X-Forwarded-Port", listener_port),
            ("X-Amzn-Trace-Id", _trace_id(req.header_values("X-Amzn-Trace-Id"))),
        ]
        if body or req.method in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))
        target_path = req.path + ("?" + req.query if req.query else "")
        conn = http.client.HTTPConnection(ip, port, timeout=SETTINGS.proxy_timeout)
        started = time.monotonic()
        failure = None
        try:
            conn.putrequest(req.method, target_path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            elapsed = time.monotonic() - started
            answer = resp.read(MAX_RESPONSE + 1)
            if len(answer) > MAX_RESPONSE:
                failure = 502
            else:
                out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
                _count_target_answer(tg_arn, resp.status, elapsed)
                cloudwatch_metrics.record(self.server.listener_arn, tg_arn, Source.TARGET, resp.status, elapsed)
                return resp.status, out, answer
        except (socket.timeout, TimeoutError):
            failure = 504  # no connection or no answer within the timeout
        except (OSError, http.client.HTTPException):
            failure = 502  # refused, reset, or not HTTP
        finally:
            conn.close()
        log.info("listener %s: %s:%s -> %s", self.server.listener_arn, ip, port, failure)
        with STATS_LOCK:
            _group_stats(tg_arn).elb_5xx += 1
            _listener_stats(self.server.listener_arn).elb_5xx += 1
        cloudwatch_metrics.record(self.server.listener_arn, tg_arn, Source.ELB, failure)
        d = _elb_error(failure, tg_arn)
        return d.status, d.headers, d.body

    def _safe_handle(self) -> None:
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("data plane request failed")
            self.close_connection = True
            try:
                d = _elb_error(500)
                self._send(d.status, d.headers, d.body)
            except OSError:
                pass

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _safe_handle


class ListenerServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listener_arn: str, host: str):
        self.listener_arn = listener_arn
        super().__init__((host, 0), ListenerHandler)
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"alb-{listener_arn.rsplit('/', 1)[-1]}", daemon=True,
        )
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _alb_listeners() -> set[str]:
    """HTTP/HTTPS listeners of application load balancers (state lock held)."""
    arns = set()
    for account_backends in list(elbv2_backends.values()):
        for backend in list(account_backends.values()):
            for lb in list(backend.load_balancers.values()):
                if (getattr(lb, "type", "application") or "application") != "application":
                    continue
                for arn, listener in list(lb.listeners.items()):
                    if (listener.protocol or "HTTP").upper() in ("HTTP", "HTTPS"):
                        arns.add(arn)
    return arns


def sync() -> dict[str, str]:
    """Start servers for new listeners and stop those of deleted ones. Returns
    {listener arn: url}."""
    stopping = []
    with SETTINGS.lock:
        wanted = _alb_listeners()
        for arn in list(RUNTIMES):
            if arn not in wanted:
                runtime = RUNTIMES.pop(arn)
                if runtime.server is not None:
                    stopping.append(runtime.server)
        for arn in wanted - set(RUNTIMES):
            runtime = ListenerRuntime(arn, random.Random(f"{SETTINGS.seed}"))
            try:
                runtime.server = ListenerServer(arn, SETTINGS.bind_host)
            except OSError as exc:
                log.error("cannot serve listener %s: %s", arn, exc)
                continue
            runtime.url = f"http://{SETTINGS.bind_host}:{runtime.server.server_port}"
            RUNTIMES[arn] = runtime
            log.info("listener %s serves on %s", arn, runtime.url)
        mapping = {arn: r.url for arn, r in RUNTIMES.items()}
    for server in stopping:
        log.info("listener %s stopped", server.listener_arn)
        server.stop()
    return mapping


class Syncer(threading.Thread):
    def __init__(self, interval: float) -> None:
        super().__init__(name="alb-sync", daemon=True)
        self.interval = interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                sync()
            except Exception:
                log.exception("data plane sync failed")


SYNCER: Syncer | None = None


def start(lock: Any, seed: int = 0, proxy_timeout: float = 3.0, interval: float = 0.2) -> None:
    """Called once by the emulator's main()."""
    global SYNCER
    SETTINGS.lock = lock
    SETTINGS.seed = seed
    SETTINGS.proxy_timeout = proxy_timeout
    SYNCER = Syncer(interval)
    SYNCER.start()


def stop() -> None:
    if SYNCER is not None:
        SYNCER.stop_event.set()
    with SETTINGS.lock:
        servers = [r.server for r in RUNTIMES.values() if r.server is not None]
        RUNTIMES.clear()
    for server in servers:
        server.stop()


# ---------------------------------------------------------------------------
# The emulator's admin endpoints
# ---------------------------------------------------------------------------


def admin_app(environ, start_response):
    path = environ.get("PATH_INFO")
    method = environ.get("REQUEST_METHOD", "GET")
    if path == LOAD_BALANCERS_PATH and method == "GET":
        status, doc = "200 OK", sync()
    elif path == STATS_PATH and method in ("GET", "DELETE"):
        status, doc = "200 OK", stats_json(reset=method == "DELETE")
    else:
        status, doc = "405 Method Not Allowed", {"error": f"{method} not supported on {path}"}
    body = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
