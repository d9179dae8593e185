"""Self-test of the ALB data plane (alb_data_plane.py, README section 10).

Run from the repository root:
    .venv/bin/python -m unittest discover -s tests/emulator -p 'test_*.py'

Real HTTP through each listener's loopback port to the stand-in apps of real (emulated)
instances, with the target health the emulator's checker computes.
"""

from __future__ import annotations

import collections
import http.client
import http.server
import json
import os
import socket
import sys
import threading
import urllib.parse
import urllib.request

import test_emulator as te

EMULATOR_PROC = None
EMULATOR_URL = ""
EMULATOR_LOG = ""


def setUpModule() -> None:
    global EMULATOR_PROC, EMULATOR_URL, EMULATOR_LOG
    EMULATOR_PROC, EMULATOR_URL, EMULATOR_LOG = te.start_emulator()


def tearDownModule() -> None:
    if EMULATOR_PROC is not None:
        te.stop_emulator(EMULATOR_PROC)
        if os.environ.get("KEEP_EMULATOR_LOG"):
            print(f"emulator log (data plane): {EMULATOR_LOG}", file=sys.stderr)
        else:
            os.unlink(EMULATOR_LOG)


def admin(path: str, method: str = "GET") -> dict:
    req = urllib.request.Request(EMULATOR_URL + path, method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: str):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body!r})"


def send(base: str, path: str = "/", method: str = "GET", headers: dict | None = None,
         body: bytes | None = None) -> Answer:
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Answer(resp.status, resp.getheaders(), resp.read().decode())
    finally:
        conn.close()


class DataPlaneTest(te.EmulatorTestCase):
    @property
    def url(self) -> str:
        return EMULATOR_URL

    # --- fixtures -------------------------------------------------------------

    def setUp(self) -> None:
        super().setUp()
        self.vpc, self.subnets = self.network()

    def fleet(self, version: str, behaviour: str | None = "healthy", count: int = 1) -> list[str]:
        ids = [i["InstanceId"] for i in self.launch(self.image(behaviour, version), self.subnets[0], count)]
        self.wait_running(ids)
        return ids

    def group(self, instance_ids: list[str], **kw) -> str:
        tg = self.target_group(self.vpc, **kw)
        if instance_ids:
            self.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i} for i in instance_ids])
        return tg

    def wait_group(self, tg: str, instance_ids: list[str], state: str = "healthy") -> None:
        for i in instance_ids:
            self.wait_state(tg, i, state)

    def alb(self, default_actions: list[dict]) -> tuple[str, str]:
        """(listener arn, listener url)."""
        lb = self.load_balancer(self.subnets)
        listener = self.elb.create_listener(
            LoadBalancerArn=lb, Protocol="HTTP", Port=80, DefaultActions=default_actions,
        )["Listeners"][0]["ListenerArn"]
        endpoints = admin("/_greenlight/load-balancers")
        self.assertIn(listener, endpoints)
        self.assertRegex(endpoints[listener], r"^http://127\.0\.0\.1:\d+$")
        return listener, endpoints[listener]

    @staticmethod
    def forward(*weighted: tuple[str, int], sticky_seconds: int | None = None) -> list[dict]:
        config: dict = {"TargetGroups": [{"TargetGroupArn": tg, "Weight": w} for tg, w in weighted]}
        if sticky_seconds:
            config["TargetGroupStickinessConfig"] = {"Enabled": True, "DurationSeconds": sticky_seconds}
        return [{"Type": "forward", "ForwardConfig": config}]

    # --- tests ----------------------------------------------------------------

    def test_forward_to_a_healthy_group_and_forwarded_headers(self):
        ids = self.fleet("v1")
        tg = self.group(ids)
        listener, base = self.alb([{"Type": "forward", "TargetGroupArn": tg}])
        self.wait_group(tg, ids)
        answer = send(base, "/anything?x=1")
        self.assertEqual((answer.status, answer.body), (200, "ok version=v1"))
        answer = send(base, "/upload", method="POST", body=b"x" * 100)
        self.assertEqual(answer.status, 200)
        too_big = send(base, "/upload", method="POST", body=b"x" * (1024 * 1024 + 1))
        self.assertEqual(too_big.status, 413)
        stats = admin("/_greenlight/alb-stats")
        group = stats["target_groups"][tg]
        self.assertEqual((group["requests"], group["target_2xx"], group["elb_5xx"]), (2, 2, 0))
        self.assertEqual(group["target_response_time"]["count"], 2)
        self.assertEqual(stats["listeners"][listener]["requests"], 3)
        self.assertEqual(stats["listeners"][listener]["elb_4xx"], 1)

    def test_weights_decide_the_share_of_each_group(self):
        blue_ids, green_ids, red_ids = self.fleet("blue"), self.fleet("green"), self.fleet("red")
        blue, green, red = self.group(blue_ids), self.group(green_ids), self.group(red_ids)
        _, base = self.alb(self.forward((blue, 90), (green, 10), (red, 0)))
        self.wait_group(blue, blue_ids)
        self.wait_group(green, green_ids)
        self.wait_group(red, red_ids)
        n = 400
        seen = collections.Counter(send(base).body for _ in range(n))
        self.assertEqual(set(seen) - {"ok version=blue", "ok version=green"}, set(), seen)
        self.assertAlmostEqual(seen["ok version=blue"] / n, 0.9, delta=0.06, msg=seen)
        self.assertAlmostEqual(seen["ok version=green"] / n, 0.1, delta=0.06, msg=seen)
        stats = admin("/_greenlight/alb-stats")["target_groups"]
        self.assertEqual(stats[blue]["requests"] + stats[green]["requests"], n)
        self.assertNotIn(red, stats)

    def test_rules_by_priority_then_the_default_action(self):
        blue_ids, green_ids = self.fleet("blue"), self.fleet("green")
        blue, green = self.group(blue_ids), self.group(green_ids)
        listener, base = self.alb([{"Type": "forward", "TargetGroupArn": blue}])

        def rule(priority, conditions, actions):
            self.elb.create_rule(ListenerArn=listener, Priority=priority, Conditions=conditions,
                                 Actions=actions)

        deployment = [{"Field": "http-header", "HttpHeaderConfig": {
            "HttpHeaderName": "X-Greenlight-Deployment", "Values": ["d-123"]}}]
        teapot = [{"Type": "fixed-response", "FixedResponseConfig": {
            "StatusCode": "418", "ContentType": "text/plain", "MessageBody": "teapot"}}]
        # created first, but the lower priority number wins
        rule(20, deployment, teapot)
        rule(10, deployment, [{"Type": "forward", "TargetGroupArn": green}])
        rule(30, [{"Field": "host-header", "HostHeaderConfig": {"Values": ["canary.*.EXAMPLE.com"]}}],
             [{"Type": "forward", "TargetGroupArn": green}])
        rule(40, [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/green/*", "/g?een"]}}],
             [{"Type": "forward", "TargetGroupArn": green}])
        rule(50, [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/tea*"]}},
                  {"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["POST"]}},
                  {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "cup", "Value": "*"}]}},
                  {"Field": "source-ip", "SourceIpConfig": {"Values": ["127.0.0.0/8"]}}], teapot)
        self.wait_group(blue, blue_ids)
        self.wait_group(green, green_ids)

        def version(path="/", **kw):
            return send(base, path, **kw).body

        self.assertEqual(version(headers={"x-greenlight-deployment": "D-123"}), "ok version=green")
        self.assertEqual(version(headers={"X-Greenlight-Deployment": "d-456"}), "ok version=blue")
        self.assertEqual(version(), "ok version=blue")
        self.assertEqual(version(headers={"Host": "canary.eu.example.com:80"}), "ok version=green")
        self.assertEqual(version(headers={"Host": "www.example.com"}), "ok version=blue")
        self.assertEqual(version("/green/x"), "ok version=green")
        self.assertEqual(version("/green"), "ok version=green")  # /g?een
        self.assertEqual(version("/Green/x"), "ok version=blue")  # paths are case-sensitive
        self.assertEqual(version("/teapot?cup=1", method="POST"), "teapot")
        self.assertEqual(version("/teapot?cup=1"), "ok version=blue")  # GET: one condition fails
        self.assertEqual(version("/teapot?mug=1", method="POST"), "ok version=blue")

    def test_fail_open_no_targets_and_refused_targets(self):
        sick_ids = self.fleet("sick", behaviour="unhealthy", count=2)
        sick = self.group(sick_ids)
        empty = self.group([])
        silent_ids = self.fleet("silent", behaviour=None)  # no app: connections are refused
        silent = self.group(silent_ids)
        _, sick_base = self.alb([{"Type": "forward", "TargetGroupArn": sick}])
        _, empty_base = self.alb([{"Type": "forward", "TargetGroupArn": empty}])
        _, silent_base = self.alb([{"Type": "forward", "TargetGroupArn": silent}])
        self.wait_group(sick, sick_ids, "unhealthy")
        self.wait_group(silent, silent_ids, "unhealthy")

        # only unhealthy targets: the ALB fails open and the app's own 503 comes back
        answer = send(sick_base)
        self.assertEqual((answer.status, answer.body), (503, "unavailable"))
        answer = send(empty_base)
        self.assertEqual(answer.status, 503)
        self.assertEqual(answer.header("Server"), "awselb/2.0")
        self.assertEqual(send(silent_base).status, 502)

        # targets still `initial` get no requests ("as soon as ... the target passes the
        # initial health checks"): 503. A 300 s interval keeps this one initial.
        waiting_ids = self.fleet("waiting")
        waiting = self.group(waiting_ids, HealthCheckIntervalSeconds=300)
        _, waiting_base = self.alb([{"Type": "forward", "TargetGroupArn": waiting}])
        self.assertEqual(self.health(waiting)[waiting_ids[0]][0], "initial")
        answer = send(waiting_base)
        self.assertEqual((answer.status, answer.header("Server")), (503, "awselb/2.0"))
        stats = admin("/_greenlight/alb-stats")["target_groups"]
        self.assertEqual((stats[sick]["target_5xx"], stats[sick]["elb_5xx"]), (1, 0))
        self.assertEqual((stats[empty]["requests"], stats[empty]["elb_5xx"]), (1, 1))
        self.assertEqual((stats[silent]["target_5xx"], stats[silent]["elb_5xx"]), (0, 1))

    def test_round_robin_and_draining_targets_get_no_new_requests(self):
        old_ids, new_ids = self.fleet("old"), self.fleet("new")
        tg = self.group(old_ids + new_ids)
        self.elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "60"}])
        _, base = self.alb([{"Type": "forward", "TargetGroupArn": tg}])
        self.wait_group(tg, old_ids + new_ids)
        seen = collections.Counter(send(base).body for _ in range(10))
        self.assertEqual(seen, {"ok version=old": 5, "ok version=new": 5})
        self.elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": old_ids[0]}])
        self.assertEqual(self.health(tg)[old_ids[0]][0], "draining")
        seen = collections.Counter(send(base).body for _ in range(10))
        self.assertEqual(seen, {"ok version=new": 10})

    def test_group_stickiness_outlives_a_weight_flip(self):
        blue_ids, green_ids = self.fleet("blue"), self.fleet("green")
        blue, green = self.group(blue_ids), self.group(green_ids)
        listener, base = self.alb(self.forward((blue, 100), (green, 0), sticky_seconds=300))
        self.wait_group(blue, blue_ids)
        self.wait_group(green, green_ids)
        first = send(base)
        self.assertEqual(first.body, "ok version=blue")
        cookie = first.header("Set-Cookie")
        self.assertRegex(cookie or "", r"^AWSALBTG=[^;]+; Expires=")
        cookie = cookie.split(";", 1)[0]

        self.elb.modify_listener(ListenerArn=listener,
                                 DefaultActions=self.forward((blue, 0), (green, 100), sticky_seconds=300))
        for _ in range(5):
            self.assertEqual(send(base, headers={"Cookie": f"a=b; {cookie}"}).body, "ok version=blue")
        self.assertEqual(send(base).body, "ok version=green")
        self.assertEqual(send(base, headers={"Cookie": "AWSALBTG=garbage"}).body, "ok version=green")

        # the sticky group loses its targets: the client still stays (503), as on AWS
        self.elb.deregister_targets(TargetGroupArn=blue, Targets=[{"Id": blue_ids[0]}])
        self.assertEqual(send(base, headers={"Cookie": cookie}).status, 503)

    def test_authenticate_oidc_before_forward(self):
        ids = self.fleet("secret")
        tg = self.group(ids)
        oidc = {"Issuer": "https://idp.example.com", "AuthorizationEndpoint": "https://idp.example.com/auth",
                "TokenEndpoint": "https://idp.example.com/token",
                "UserInfoEndpoint": "https://idp.example.com/userinfo",
                "ClientId": "client", "ClientSecret": "secret"}
        _, base = self.alb([
            {"Type": "forward", "TargetGroupArn": tg, "Order": 2},
            {"Type": "authenticate-oidc", "AuthenticateOidcConfig": oidc, "Order": 1},
        ])
        self.wait_group(tg, ids)
        self.assertEqual(send(base).status, 401)
        self.assertEqual(send(base, headers={"X-Greenlight-Test-Authenticated": "false"}).status, 401)
        answer = send(base, headers={"X-Greenlight-Test-Authenticated": "true"})
        self.assertEqual((answer.status, answer.body), (200, "ok version=secret"))

    def test_fixed_response_and_redirect(self):
        listener, base = self.alb([{"Type": "fixed-response", "FixedResponseConfig": {
            "StatusCode": "404", "ContentType": "application/json", "MessageBody": '{"error":"nope"}'}}])
        self.elb.create_rule(
            ListenerArn=listener, Priority=1,
            Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/old/*"]}}],
            Actions=[{"Type": "redirect", "RedirectConfig": {
                "Protocol": "HTTPS", "Port": "443", "Path": "/new/#{path}", "StatusCode": "HTTP_301"}}])
        self.elb.create_rule(
            ListenerArn=listener, Priority=2,
            Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/moved"]}}],
            Actions=[{"Type": "redirect", "RedirectConfig": {
                "Host": "other.example.com", "Query": "from=#{host}", "StatusCode": "HTTP_302"}}])
        answer = send(base, "/missing")
        self.assertEqual((answer.status, answer.body), (404, '{"error":"nope"}'))
        self.assertEqual(answer.header("Content-Type"), "application/json")
        answer = send(base, "/old/page?a=1", headers={"Host": "shop.example.com"})
        self.assertEqual(answer.status, 301)
        self.assertEqual(answer.header("Location"), "https://shop.example.com:443/new/old/page?a=1")
        answer = send(base, "/moved?a=1", headers={"Host": "shop.example.com"})
        self.assertEqual(answer.status, 302)
        self.assertEqual(answer.header("Location"), "http://other.example.com:80/moved?from=shop.example.com")
        stats = admin("/_greenlight/alb-stats")["listeners"][listener]
        self.assertEqual((stats["fixed_response"], stats["redirect"]), (1, 2))

    def test_deleted_listener_stops_serving(self):
        listener, base = self.alb([{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}])
        self.assertEqual(send(base).status, 200)
        self.elb.delete_listener(ListenerArn=listener)
        self.assertNotIn(listener, admin("/_greenlight/load-balancers"))
        with self.assertRaises(OSError):
            send(base)

    def test_proxied_request_headers_and_timeout(self):
        # Two instances without a stand-in app; the test serves on their loopback
        # addresses itself, on ports of its own, and registers them on those ports.
        echo_id, silent_id = self.fleet("echo", behaviour=None) + self.fleet("silent", behaviour=None)
        addresses = self.describe([echo_id, silent_id])
        echo_ip, silent_ip = (addresses[i]["PrivateIpAddress"] for i in (echo_id, silent_id))
        seen = []

        class Echo(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # the health check
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen.append((self.command, self.path, dict(self.headers), body))
                self.send_response(201)
                self.send_header("Content-Length", "7")
                self.send_header("X-App", "echo")
                self.end_headers()
                self.wfile.write(b"created")

            def log_message(self, *args):
                pass

        echo = http.server.ThreadingHTTPServer((echo_ip, 0), Echo)
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        self.addCleanup(echo.server_close)
        self.addCleanup(echo.shutdown)
        silent = socket.socket()  # accepts connections (backlog) but never answers
        silent.bind((silent_ip, 0))
        silent.listen(64)
        self.addCleanup(silent.close)

        echo_tg = self.target_group(self.vpc)
        self.elb.register_targets(TargetGroupArn=echo_tg, Targets=[
            {"Id": echo_id, "Port": echo.server_address[1]}])
        silent_tg = self.target_group(self.vpc)
        self.elb.register_targets(TargetGroupArn=silent_tg, Targets=[
            {"Id": silent_id, "Port": silent.getsockname()[1]}])
        listener, base = self.alb([{"Type": "forward", "TargetGroupArn": echo_tg}])
        self.elb.create_rule(ListenerArn=listener, Priority=1,
                             Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/slow"]}}],
                             Actions=[{"Type": "forward", "TargetGroupArn": silent_tg}])
        self.wait_group(echo_tg, [echo_id])
        self.assertEqual(self.wait_state(silent_tg, silent_id, "unhealthy")[1], "Target.Timeout")

        answer = send(base, "/items?q=1", method="POST", body=b'{"a": 1}',
                      headers={"Host": "app.example.com", "X-Forwarded-For": "203.0.113.7",
                               "Content-Type": "application/json"})
        self.assertEqual((answer.status, answer.body, answer.header("X-App")), (201, "created", "echo"))
        method, path, headers, body = seen[0]
        self.assertEqual((method, path, body), ("POST", "/items?q=1", b'{"a": 1}'))
        self.assertEqual(headers["Host"], "app.example.com")
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(headers["X-Forwarded-For"], "203.0.113.7, 127.0.0.1")
        self.assertEqual(headers["X-Forwarded-Proto"], "http")
        self.assertEqual(headers["X-Forwarded-Port"], "80")
        self.assertRegex(headers["X-Amzn-Trace-Id"], r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24}$")

        # only unhealthy targets: fail open, and the target never answers -> 504
        answer = send(base, "/slow", method="POST", body=b"")
        self.assertEqual(answer.status, 504)
        stats = admin("/_greenlight/alb-stats")["target_groups"]
        self.assertEqual((stats[echo_tg]["target_2xx"], stats[silent_tg]["elb_5xx"]), (1, 1))
