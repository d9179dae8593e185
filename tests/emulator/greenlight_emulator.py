"""
greenlight local AWS emulator
=============================

A moto (server mode) process for greenlight's tests, with the AWS behaviour
that a blue/green deployment depends on and that stock moto 5.2.5 lacks.
Everything is done by patching moto's model/backend classes in-process;
the wire protocol and all other APIs are moto's own.

Added on top of moto (each section below names the AWS documentation):
  1. EC2 RunInstances ClientToken idempotency ("Ensuring idempotency"):
     same token + same parameters -> the original reservation, nothing is
     launched; same token + other parameters -> IdempotentParameterMismatch.
  2. EC2 instance lifecycle: instances are `pending` for --pending-seconds,
     then `running` (also after StartInstances).
  3. Every instance gets a unique loopback PrivateIpAddress (127.x.y.z, never
     127.0.0.1) and, once running, a stand-in HTTP app bound to
     (that address, AMI tag `greenlight:app-port`, default 8080) whose
     behaviour comes from the AMI tag `greenlight:app-behaviour`
     (healthy | unhealthy | smoke-fails; absent -> no app). Stopped or
     terminated instances lose their app.
  4. ELBv2 target health computed by real HTTP health checks ("Health checks
     for your target groups"): initial -> healthy/unhealthy by thresholds,
     unused (Target.NotInUse / Target.InvalidState), draining for
     deregistration_delay.timeout_seconds, then gone.
  5. EventBridge -> SQS delivers the full event envelope (moto drops
     `account`, and builds the JSON by string substitution).
  6. Thread safety: moto backends are plain dicts; all requests except SQS
     (which has its own locking and long polling) and Lambda Invoke (item 14)
     are serialised with one lock that the background threads share. Every
     signed request is logged per access key id as IAM's `service:Action`
     (GET /_greenlight/calls).
  7. Fault injection per access key id (POST/GET/DELETE /_greenlight/faults):
     seeded throttling errors in each protocol's wire shape, 500/503 before
     or after moto applied the request, connection resets (TCP RST) before or
     after, and added latency ("Error retries and exponential backoff in
     AWS"). Section 7 below has the details.
  8. Usage per access key id (GET/DELETE /_greenlight/usage): calls counted per
     IAM `service:Action`, DynamoDB capacity units computed as AWS documents them
     ("Read/write capacity mode", "DynamoDB item sizes and formats") from the
     items moto holds before and after each request (also put into the answer's
     ConsumedCapacity when asked), and conditional-write conflicts met.
     Section 8 below has the details.
  9. Listener and rule actions as AWS keeps them: an authenticate-oidc
     action's ClientSecret is never reported and is kept on a modify with
     UseExistingClientSecret=true (moto echoed it and lost it); requests that
     carry a ClientSecret and the secrets held are readable at
     GET /_greenlight/client-secrets; a target group's LoadBalancerArns are
     the load balancers that forward to it, each once (moto: duplicates, and
     none added by ModifyListener/ModifyRule).
 10. CloudWatch metrics (module cloudwatch_metrics): the ALB data plane's requests as
     AWS/ApplicationELB metrics, published per --metric-period-s (60 s as on AWS), and
     GetMetricData answered by the emulator for every MetricStat query (percentiles and
     trimmed counts included, which moto cannot answer), custom namespaces from the datums
     moto stored through PutMetricData.
 11. Stand-in app traits from AMI tags greenlight:app-error-rate, greenlight:app-latency
     and greenlight:app-after-requests (section 3b).
 12. An AMI moved to a chosen id (POST /_greenlight/image-id, section 9b): not an AWS
     behaviour; the local stack gives the README's example image the README's id.
 13. DynamoDB Streams (moto implements the API; section 5b): no stream record for a
     write that changes nothing, as AWS documents; a table keeps one stream for its life
     (moto gave it a new one after a cancelled transaction, which shard iterators taken
     before never saw), and a cancelled transaction adds no record.
 14. Lambda Invoke served by loopback handlers (Lambda API reference "Invoke", section 13):
     moto cannot run function code here, so POST /2015-03-31/functions/{name, ARN or partial
     ARN}[:qualifier]/invocations is answered by the emulator, which POSTs the payload to the
     loopback HTTP server registered for the function (POST/GET/DELETE
     /_greenlight/lambda-handlers), without holding STATE_LOCK, and answers as Lambda does:
     200 with the handler's body; a function error (X-Amz-Function-Error: Unhandled) when the
     handler fails, cannot be reached or times out; 202 for Event, 204 for DryRun; 404
     ResourceNotFoundException without a handler; 413 over 6 MB. Logged, counted and faulted
     as lambda:InvokeFunction (IAM's name); every Lambda REST request gets its IAM action name
     from botocore's model of the API.

Contract with the Rust test harness:
  python greenlight_emulator.py --host 127.0.0.1 --port 0
  -> prints exactly one line `READY http://127.0.0.1:<port>` on stdout,
     logs on stderr, exits when stdin reaches EOF or on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import gzip
import http.client
import http.server
import inspect
import io
import ipaddress
import json
import logging
import math
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

# Dummy credentials / region, set before moto/boto are imported.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from werkzeug.serving import make_server  # noqa: E402

from moto.core.responses import ActionResult  # noqa: E402
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends  # noqa: E402
from moto.dynamodb.models.table import StreamShard  # noqa: E402
from moto.dynamodb.models.table import Table as DynamoTable  # noqa: E402
from moto.ec2.exceptions import EC2ClientError  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402
from moto.ec2.models.instances import Instance, InstanceBackend, InstanceState  # noqa: E402
from moto.ec2.responses._base_response import EC2BaseResponse  # noqa: E402
from moto.ec2.responses.instances import InstanceResponse  # noqa: E402
from moto.elbv2.exceptions import InvalidTargetError, TargetNotRunning, ValidationError  # noqa: E402
from moto.elbv2.models import (  # noqa: E402
    ELBv2Backend,
    FakeAction,
    FakeHealthStatus,
    FakeTargetGroup,
    elbv2_backends,
)
from moto.events.utils import EventTemplateParser  # noqa: E402
from moto.server import DomainDispatcherApplication, create_backend_app  # noqa: E402
from moto.moto_server.werkzeug_app import MotoRequestHandler  # noqa: E402

import alb_data_plane  # noqa: E402  (section 10: the ALB data plane, its own module)
import cloudwatch_metrics  # noqa: E402  (section 12: ALB metrics and GetMetricData)
from moto.cloudwatch.models import cloudwatch_backends  # noqa: E402

log = logging.getLogger("greenlight-emulator")


# ---------------------------------------------------------------------------
# Configuration (filled from the command line in main())
# ---------------------------------------------------------------------------


@dataclass
class Config:
    pending_seconds: float = 1.0
    time_scale: float = 0.1
    tick_seconds: float = 0.02
    default_app_port: int = 8080
    app_seed: int = 0  # seeds each stand-in app's error and latency draws (with its instance id)


CFG = Config()

# One lock for moto's state. Held by every (non-SQS) API request and by the
# background threads whenever they read or change moto models.
STATE_LOCK = threading.RLock()

APP_PORT_TAG = "greenlight:app-port"
APP_BEHAVIOUR_TAG = "greenlight:app-behaviour"
APP_ERROR_RATE_TAG = "greenlight:app-error-rate"
APP_LATENCY_TAG = "greenlight:app-latency"
APP_AFTER_REQUESTS_TAG = "greenlight:app-after-requests"
VERSION_TAG = "greenlight:version"


# ---------------------------------------------------------------------------
# 3a. Loopback addresses
#
# Linux routes all of 127.0.0.0/8 to `lo`, so each instance can have its own
# address and its app can listen on the same port as every other instance.
# To keep several emulator processes (parallel `cargo test` binaries) from
# handing out the same address, an address is claimed by binding a socket to
# (address, CLAIM_PORT) for as long as the instance lives; bind() fails with
# EADDRINUSE in any other process that tries the same address.
# ---------------------------------------------------------------------------

CLAIM_PORT = 65535  # outside Linux's ephemeral range; never used by apps


class LoopbackAllocator:
    """Hands out 127.<B>.<C>.<D> addresses, B chosen at random per process."""

    PER_BLOCK = 256 * 253  # C in 0..255, D in 2..254

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first_block = random.randint(64, 250)
        self._n = 0
        self._claims: dict[str, socket.socket] = {}

    def _next_candidate(self) -> str:
        n, self._n = self._n, self._n + 1
        block = 64 + (self._first_block - 64 + n // self.PER_BLOCK) % 187  # 64..250
        third, fourth = divmod(n % self.PER_BLOCK, 253)
        return f"127.{block}.{third}.{fourth + 2}"

    def allocate(self) -> str:
        with self._lock:
            for _ in range(100_000):
                ip = self._next_candidate()
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.bind((ip, CLAIM_PORT))  # no SO_REUSEADDR: exclusive claim
                except OSError:
                    sock.close()  # claimed by another emulator process
                    continue
                self._claims[ip] = sock
                return ip
        raise RuntimeError("no free loopback address")

    def release(self, ip: str | None) -> None:
        with self._lock:
            sock = self._claims.pop(ip or "", None)
        if sock is not None:
            sock.close()


LOOPBACK = LoopbackAllocator()


# ---------------------------------------------------------------------------
# 3b. Stand-in applications (one per running instance whose AMI says so)
# ---------------------------------------------------------------------------


# Paths the traits never touch: the target groups' health check path and the smoke test's
# path (the fixture's), so that health checks and smoke gates pass and only an analysis of
# the traffic can tell a leaky or slow version.
TRAIT_EXEMPT_PATHS = frozenset({"/health", "/smoke"})
Z99 = 2.3263478740408408  # the standard normal's 99th percentile


@dataclass(frozen=True)
class AppTraits:
    """How a stand-in app misbehaves on user requests (AMI tags, README section 3)."""

    error_rate: float = 0.0  # fraction of user requests answered 500
    latency_mu: float | None = None  # lognormal parameters of the per-request sleep (seconds)
    latency_sigma: float = 0.0
    after_requests: int = 0  # the traits apply only after this many user requests

    @staticmethod
    def from_tags(tags: dict[str, str]) -> "AppTraits":
        """Parses the trait tags; an unparsable value is logged and ignored."""
        error_rate, mu, sigma, after = 0.0, None, 0.0, 0
        raw = tags.get(APP_ERROR_RATE_TAG)
        if raw:
            try:
                error_rate = min(max(float(raw.strip().rstrip("%")) / 100.0, 0.0), 1.0)
            except ValueError:
                log.error("ignored %s=%r (want e.g. 5%%)", APP_ERROR_RATE_TAG, raw)
        raw = tags.get(APP_LATENCY_TAG)
        if raw:
            try:
                quantiles = dict(_latency_part(part) for part in raw.split(","))
                p50, p99 = quantiles["p50"], quantiles["p99"]
                if not 0 < p50 <= p99:
                    raise ValueError("0 < p50 <= p99 is required")
                mu, sigma = math.log(p50), (math.log(p99) - math.log(p50)) / Z99
            except (ValueError, KeyError) as exc:
                log.error("ignored %s=%r (want e.g. p50=20ms,p99=150ms): %s", APP_LATENCY_TAG, raw, exc)
        raw = tags.get(APP_AFTER_REQUESTS_TAG)
        if raw:
            try:
                after = max(int(raw.strip()), 0)
            except ValueError:
                log.error("ignored %s=%r (want a whole number)", APP_AFTER_REQUESTS_TAG, raw)
        return AppTraits(error_rate, mu, sigma, after)


def _latency_part(part: str) -> tuple[str, float]:
    """`p50=20ms` -> ("p50", 0.02); units ms or s."""
    name, _, value = part.strip().partition("=")
    value = value.strip().lower()
    if value.endswith("ms"):
        seconds = float(value[:-2]) / 1000.0
    elif value.endswith("s"):
        seconds = float(value[:-1])
    else:
        raise ValueError(f"{part!r}: a unit (ms or s) is required")
    return name.strip().lower(), seconds


class TraitDice:
    """The seeded draws of one app: two per user request (error, latency), whatever is used,
    so the n-th user request of an instance always meets the same fate."""

    def __init__(self, traits: AppTraits, seed: str):
        self.traits = traits
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.user_requests = 0

    def draw(self) -> tuple[bool, float]:
        """(answer 500?, seconds to sleep) for the next user request."""
        with self.lock:
            self.user_requests += 1
            error_draw, normal_draw = self.rng.random(), self.rng.gauss(0.0, 1.0)
            if self.user_requests <= self.traits.after_requests:
                return False, 0.0
        t = self.traits
        delay = math.exp(t.latency_mu + t.latency_sigma * normal_draw) if t.latency_mu is not None else 0.0
        return error_draw < t.error_rate, min(delay, 30.0)


def _make_handler(behaviour: str, version: str, dice: TraitDice | None = None):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "greenlight-standin/1"
        timeout = 5  # a silent client cannot pin a thread forever

        def _respond(self) -> None:
            path = self.path.split("?", 1)[0]
            if behaviour == "healthy":
                status, body = 200, f"ok version={version}"
            elif behaviour == "unhealthy":
                status, body = 503, "unavailable"
            elif behaviour == "smoke-fails":
                status, body = (200, "ok") if path == "/health" else (500, "internal error")
            else:
                status, body = 500, f"unknown behaviour {behaviour!r}"
            if dice is not None and path not in TRAIT_EXEMPT_PATHS:
                fail, delay = dice.draw()
                if delay > 0:
                    time.sleep(delay)
                if fail:
                    status, body = 500, f"internal error version={version}"
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _respond

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("app %s: " + fmt, self.server.server_address, *args)

    return Handler


class StandInServer(http.server.ThreadingHTTPServer):
    allow_reuse_address = True  # SO_REUSEADDR
    daemon_threads = True


class StandInApp:
    def __init__(self, instance_id: str, ip: str, port: int, behaviour: str, version: str,
                 traits: AppTraits | None = None):
        self.instance_id = instance_id
        self.address = (ip, port)
        dice = TraitDice(traits, f"{CFG.app_seed}:{instance_id}") if traits and traits != AppTraits() else None
        self.server = StandInServer(self.address, _make_handler(behaviour, version, dice))
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"app-{instance_id}",
            daemon=True,
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=2)


APPS: dict[str, StandInApp] = {}


def _ami_tags(instance: Instance) -> dict[str, str]:
    return dict(instance.ec2_backend.tags.get(instance.image_id, {}))


def start_app(instance: Instance) -> None:
    if instance.id in APPS:
        return
    tags = _ami_tags(instance)
    behaviour = tags.get(APP_BEHAVIOUR_TAG)
    if not behaviour:
        return  # no app: connections are refused
    port = int(tags.get(APP_PORT_TAG) or CFG.default_app_port)
    ip = instance.private_ip_address
    try:
        traits = AppTraits.from_tags(tags)
        APPS[instance.id] = StandInApp(
            instance.id, ip, port, behaviour, tags.get(VERSION_TAG, ""), traits
        )
        log.info("app for %s on %s:%s (%s%s)", instance.id, ip, port, behaviour,
                 "" if traits == AppTraits() else f", {traits}")
    except OSError as exc:
        log.error("cannot start app for %s on %s:%s: %s", instance.id, ip, port, exc)


def stop_app(instance_id: str) -> None:
    app = APPS.pop(instance_id, None)
    if app is not None:
        app.stop()
        log.info("app for %s stopped", instance_id)


# ---------------------------------------------------------------------------
# 2. + 3. EC2 instance lifecycle
#
# AWS: "When you launch an instance, it enters the pending state ... After the
# instance is ready for you, it enters the running state" (Instance state
# changes / lifecycle). Same when starting a stopped instance.
# ---------------------------------------------------------------------------

PENDING: dict[str, tuple[Instance, float]] = {}  # id -> (instance, running at)


def _make_pending(instance: Instance) -> None:
    instance._state = InstanceState("pending", 0)
    PENDING[instance.id] = (instance, time.monotonic() + CFG.pending_seconds)


def promote_pending_instances(now: float) -> None:
    """Called by the ticker with STATE_LOCK held."""
    for instance_id, (instance, due) in list(PENDING.items()):
        if now < due:
            continue
        del PENDING[instance_id]
        if instance.state != "pending":
            continue  # stopped/terminated meanwhile
        instance._state = InstanceState("running", 16)
        log.info("%s is running (%s)", instance.id, instance.private_ip_address)
        start_app(instance)


def _set_loopback_address(instance: Instance) -> None:
    ip = LOOPBACK.allocate()
    nic = instance.nics.get(0)
    if nic is None:
        return
    old = nic.private_ip_address
    nic.private_ip_address = ip
    for entry in nic.private_ip_addresses:
        if entry.get("PrivateIpAddress") == old or entry.get("Primary"):
            entry["PrivateIpAddress"] = ip
            entry["Primary"] = True
            break
    if getattr(nic, "private_dns_name", None):
        nic.private_dns_name = "ip-" + ip.replace(".", "-") + ".ec2.internal"
    instance._greenlight_loopback = ip


_orig_instance_init = Instance.__init__
_orig_instance_start = Instance.start
_orig_instance_stop = Instance.stop
_orig_instance_terminate = Instance.terminate


def _instance_init(self: Instance, *args: Any, **kwargs: Any) -> None:
    _orig_instance_init(self, *args, **kwargs)
    _set_loopback_address(self)
    _make_pending(self)


def _instance_start(self: Instance) -> InstanceState:
    previous = _orig_instance_start(self)
    if previous.name != "running":
        _make_pending(self)
    return previous


def _instance_stop(self: Instance) -> InstanceState:
    previous = _orig_instance_stop(self)
    PENDING.pop(self.id, None)
    stop_app(self.id)
    return previous


def _instance_terminate(self: Instance) -> InstanceState:
    previous = _orig_instance_terminate(self)
    PENDING.pop(self.id, None)
    stop_app(self.id)
    LOOPBACK.release(getattr(self, "_greenlight_loopback", None))
    return previous


Instance.__init__ = _instance_init
Instance.start = _instance_start
Instance.stop = _instance_stop
Instance.terminate = _instance_terminate


def _get_instance_by_id(self: InstanceBackend, instance_id: str) -> Instance | None:
    """moto's lookup, without its copy of every reservation per call: the health checks,
    DescribeTargetHealth and the data plane look instances up per target, and a long sweep
    leaves hundreds of reservations. The same instance objects are returned."""
    for reservation in self.reservations.values():
        for instance in reservation.instances:
            if instance.id == instance_id:
                return instance
    return None


InstanceBackend.get_instance_by_id = _get_instance_by_id

# moto forces State=pending into every RunInstances response; the state is
# now real (and a replayed idempotent request must show the current state:
# "The only information that might vary in the response is the state").
EC2BaseResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER.pop(
    "RunInstances.Reservation.Instances.Instance.State", None
)


# ---------------------------------------------------------------------------
# 1. RunInstances ClientToken idempotency (EC2 "Ensuring idempotency")
#
# "If you repeat the request with the same client token, the same response is
# returned ... If you repeat the request with the same client token, but
# change another request parameter, Amazon EC2 returns an
# IdempotentParameterMismatch error." Tokens are scoped to account + region.
# ---------------------------------------------------------------------------

# (account, region, token) -> (parameter fingerprint, reservation)
CLIENT_TOKENS: dict[tuple[str, str, str], tuple[str, Any]] = {}
_IGNORED_PARAMS = {"ClientToken", "Action", "Version"}

_orig_run_instances = InstanceResponse.run_instances


def _run_instances(self: InstanceResponse) -> Any:
    token = self._get_param("ClientToken")
    if not token:
        result = _orig_run_instances(self)
        for instance in result.result.instances:
            instance.client_token = None  # moto fills in "ABCDE"
        return result
    fingerprint = json.dumps(
        sorted((k, v) for k, v in self.querystring.items() if k not in _IGNORED_PARAMS)
    )
    key = (self.current_account, self.region, token)
    with STATE_LOCK:
        known = CLIENT_TOKENS.get(key)
        if known is not None:
            if known[0] != fingerprint:
                raise EC2ClientError(
                    "IdempotentParameterMismatch",
                    "Arguments on this idempotent request are inconsistent with "
                    "arguments used in previous request(s).",
                )
            log.info("RunInstances replay for ClientToken %s", token)
            return ActionResult(known[1])
        result = _orig_run_instances(self)
        CLIENT_TOKENS[key] = (fingerprint, result.result)
        return result


InstanceResponse.run_instances = _run_instances


# ---------------------------------------------------------------------------
# 4. ELBv2 target health (ELB "Health checks for your target groups",
#    "Target health status", "Deregistration delay")
# ---------------------------------------------------------------------------

REASON_TEXT = {
    "Elb.RegistrationInProgress": "Target registration is in progress",
    "Target.NotInUse": "Target group is not configured to receive traffic from the load balancer",
    "Target.DeregistrationInProgress": "Target deregistration is in progress",
    "Target.NotRegistered": "Target is not registered to the target group",
    "Target.Timeout": "Request timed out",
    "Target.FailedHealthChecks": "Health checks failed",
    "Target.HealthCheckDisabled": "Health checks are disabled",
}


@dataclass
class TargetHealth:
    """Health-check state of one registered target (reset = back to initial)."""

    state: str = "initial"
    reason: str | None = "Elb.RegistrationInProgress"
    description: str | None = REASON_TEXT["Elb.RegistrationInProgress"]
    successes: int = 0
    failures: int = 0
    next_check: float = 0.0
    in_flight: bool = False


@dataclass
class GroupExtra:
    health: dict[str, TargetHealth] = field(default_factory=dict)
    # id -> (target dict, monotonic deadline)
    draining: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)


def _extra(tg: FakeTargetGroup) -> GroupExtra:
    extra = getattr(tg, "_greenlight", None)
    if extra is None:
        extra = tg._greenlight = GroupExtra()
    return extra


def _action_target_groups(action: Any) -> set[str]:
    data = getattr(action, "data", action) or {}
    arns = set()
    if data.get("TargetGroupArn"):
        arns.add(data["TargetGroupArn"])
    for entry in (data.get("ForwardConfig") or {}).get("TargetGroups", []) or []:
        if entry.get("TargetGroupArn"):
            arns.add(entry["TargetGroupArn"])  # weight 0 included
    return arns


def target_groups_in_use(backend: ELBv2Backend) -> set[str]:
    """ARNs referenced by any listener default action or rule action."""
    arns: set[str] = set()
    for lb in list(backend.load_balancers.values()):
        for listener in list(lb.listeners.values()):
            for action in listener.default_actions or []:
                arns |= _action_target_groups(action)
            for rule in list(listener.rules.values()):
                for action in rule.actions or []:
                    arns |= _action_target_groups(action)
    return arns


def _backend_of(tg: FakeTargetGroup) -> ELBv2Backend:
    return elbv2_backends[tg.account_id][tg.region_name]


def _deregistration_delay(tg: FakeTargetGroup) -> float:
    return float(tg.attributes.get("deregistration_delay.timeout_seconds", 300))


def _health_port(tg: FakeTargetGroup, target: dict[str, Any]) -> str:
    if tg.health_check_port in (None, "traffic-port"):
        return str(target.get("Port") or tg.port)
    return str(tg.health_check_port)


def _status(tg, target, state, reason=None, description=None) -> FakeHealthStatus:
    if reason and description is None:
        description = REASON_TEXT.get(reason)
    return FakeHealthStatus(
        target["Id"], target.get("Port") or tg.port, _health_port(tg, target),
        state, reason, description,
    )


def _health_for(self: FakeTargetGroup, target: dict[str, Any], ec2_backend: Any) -> FakeHealthStatus:
    extra = _extra(self)
    registered = self.targets.get(target["Id"])
    if registered is None:
        draining = extra.draining.get(target["Id"])
        if draining and draining[1] > time.monotonic():
            return _status(self, draining[0], "draining", "Target.DeregistrationInProgress")
        return _status(self, target, "unused", "Target.NotRegistered")
    if registered["Id"].startswith("i-"):
        instance = ec2_backend.get_instance_by_id(registered["Id"])
        if instance is not None and instance.state in ("stopping", "stopped"):
            return _status(self, registered, "unused", "Target.InvalidState",
                           "Target is in the stopped state")
        if instance is not None and instance.state in ("shutting-down", "terminated"):
            return _status(self, registered, "unused", "Target.InvalidState",
                           "Target is in the terminated state")
    if self.arn not in target_groups_in_use(_backend_of(self)):
        return _status(self, registered, "unused", "Target.NotInUse")
    if not self.health_check_enabled:
        return _status(self, registered, "unavailable", "Target.HealthCheckDisabled")
    h = extra.health.get(registered["Id"]) or TargetHealth()
    return _status(self, registered, h.state, h.reason, h.description)


def _register(self: FakeTargetGroup, targets: list[dict[str, Any]]) -> None:
    extra = _extra(self)
    for target in targets:
        tid = target["Id"]
        instance = self.ec2_backend.get_instance_by_id(tid)
        # AWS accepts pending instances (Auto Scaling registers them at launch).
        if instance is not None and instance.state not in ("pending", "running"):
            raise TargetNotRunning(instance_id=tid)
        port = int(target.get("Port") or self.port)
        previous = self.targets.get(tid)
        self.targets[tid] = {"Id": tid, "Port": port}
        self.deregistered_targets.pop(tid, None)
        self.terminated_targets.pop(tid, None)
        if previous is None or int(previous["Port"]) != port:
            extra.draining.pop(tid, None)  # re-registering a draining target
            extra.health.pop(tid, None)  # -> initial


def _deregister(self: FakeTargetGroup, targets: list[dict[str, Any]]) -> None:
    extra = _extra(self)
    for target in targets:
        tid = target["Id"]
        registered = self.targets.pop(tid, None)
        if registered is None:
            if tid in extra.draining:
                continue  # already draining
            raise InvalidTargetError()
        self.deregistered_targets[tid] = registered
        extra.health.pop(tid, None)
        delay = _deregistration_delay(self)
        if delay > 0:
            extra.draining[tid] = (registered, time.monotonic() + delay)


def _deregister_terminated_instances(self: FakeTargetGroup, instance_ids: list[str]) -> None:
    # AWS keeps terminated instances registered and reports them as
    # unused / Target.InvalidState ("Target is in the terminated state").
    return None


def _describe_target_health(self: ELBv2Backend, target_group_arn: str, targets: list[dict[str, Any]]):
    tg = self.target_groups.get(target_group_arn)
    if tg is None:
        from moto.elbv2.exceptions import TargetGroupNotFoundError

        raise TargetGroupNotFoundError()
    if not targets:
        now = time.monotonic()
        targets = list(tg.targets.values()) + [
            t for t, deadline in _extra(tg).draining.values() if deadline > now
        ]
    return [tg.health_for(t, self.ec2_backend) for t in targets]


FakeTargetGroup.health_for = _health_for
FakeTargetGroup.register = _register
FakeTargetGroup.deregister = _deregister
FakeTargetGroup.deregister_terminated_instances = _deregister_terminated_instances
ELBv2Backend.describe_target_health = _describe_target_health


# --- listener and rule actions: OIDC client secrets, target groups' load balancers ----------
#
# AWS ("AuthenticateOidcActionConfig", ELBv2 API reference): ClientSecret "is required if you
# are creating a rule. If you are modifying a rule, you can omit this parameter if you set
# UseExistingClientSecret to true" -- the action keeps the secret it had. A secret is never
# reported back: Describe*/Create*/Modify* answers omit ClientSecret (and
# UseExistingClientSecret is a request flag, not stored). moto stores the config verbatim:
# it echoes the secret in every answer, and a modify with UseExistingClientSecret loses the
# secret and stores the flag. Here the secret is kept on the action, out of what moto
# serialises, and carried over on UseExistingClientSecret=true.
#
# A target group's LoadBalancerArns are the load balancers whose listeners or rules forward
# to it, each once. moto appends one entry per CreateListener/CreateRule that names the
# group (duplicates) and never updates it for ModifyListener/ModifyRule, nor when a
# listener stops forwarding to it.

SECRET_ATTR = "_greenlight_client_secret"
# access key id -> {"elasticloadbalancing:Action": count} of requests that carried a ClientSecret.
SECRETS_SENT: dict[str, dict[str, int]] = {}
SECRETS_PATH = "/_greenlight/client-secrets"
_CLIENT_SECRET_PARAM = re.compile(rb"(?:^|&)[A-Za-z0-9.]*\.ClientSecret=")

_fake_action_init = FakeAction.__init__


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _fake_action_init_hiding_secret(self: FakeAction, data: dict[str, Any]) -> None:
    config = (data or {}).get("AuthenticateOidcConfig")
    secret = None
    if isinstance(config, dict):
        secret = config.pop("ClientSecret", None)
        config.pop("UseExistingClientSecret", None)
    _fake_action_init(self, data)
    setattr(self, SECRET_ATTR, secret)


FakeAction.__init__ = _fake_action_init_hiding_secret


def _oidc_configs(actions: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        a["AuthenticateOidcConfig"]
        for a in actions or []
        if isinstance(a, dict) and a.get("Type") == "authenticate-oidc" and isinstance(a.get("AuthenticateOidcConfig"), dict)
    ]


def _validation_error(message: str) -> ValidationError:
    return ValidationError(message)


def _require_secrets(actions: list[dict[str, Any]] | None) -> None:
    """Creating: every authenticate-oidc action brings its ClientSecret."""
    for config in _oidc_configs(actions):
        if not config.get("ClientSecret"):
            raise _validation_error("A client secret must be specified for an authenticate-oidc action")


def _carry_secrets(actions: list[dict[str, Any]] | None, existing: list[Any]) -> None:
    """Modifying: an authenticate-oidc action with UseExistingClientSecret=true and no
    ClientSecret takes the secret of the existing authenticate-oidc action (the one with the
    same ClientId, else the first)."""
    old = [
        (getattr(a, "data", {}).get("AuthenticateOidcConfig") or {}, getattr(a, SECRET_ATTR, None))
        for a in existing or []
        if getattr(a, "type", None) == "authenticate-oidc"
    ]
    for config in _oidc_configs(actions):
        if config.get("ClientSecret"):
            continue
        if not _truthy(config.get("UseExistingClientSecret")):
            raise _validation_error(
                "A client secret must be specified for an authenticate-oidc action "
                "unless UseExistingClientSecret is true")
        same = [s for c, s in old if c.get("ClientId") == config.get("ClientId") and s]
        any_secret = [s for _, s in old if s]
        found = (same or any_secret or [None])[0]
        if found is None:
            raise _validation_error("UseExistingClientSecret is true but there is no existing client secret to use")
        config["ClientSecret"] = found


_create_listener = ELBv2Backend.create_listener
_create_rule = ELBv2Backend.create_rule
_modify_listener = ELBv2Backend.modify_listener
_modify_rule = ELBv2Backend.modify_rule


def _create_listener_keeping_secrets(self: ELBv2Backend, *args: Any, **kwargs: Any):
    bound = inspect.signature(_create_listener).bind(self, *args, **kwargs)
    _require_secrets(bound.arguments.get("actions"))
    return _create_listener(self, *args, **kwargs)


def _create_rule_keeping_secrets(self: ELBv2Backend, *args: Any, **kwargs: Any):
    bound = inspect.signature(_create_rule).bind(self, *args, **kwargs)
    _require_secrets(bound.arguments.get("actions"))
    return _create_rule(self, *args, **kwargs)


def _modify_listener_keeping_secrets(self: ELBv2Backend, *args: Any, **kwargs: Any):
    bound = inspect.signature(_modify_listener).bind(self, *args, **kwargs)
    actions = bound.arguments.get("actions")
    if actions:
        listeners = self.describe_listeners(load_balancer_arn=None, listener_arns=[bound.arguments["arn"]])
        _carry_secrets(actions, listeners[0].default_actions if listeners else [])
    return _modify_listener(self, *args, **kwargs)


def _modify_rule_keeping_secrets(self: ELBv2Backend, *args: Any, **kwargs: Any):
    bound = inspect.signature(_modify_rule).bind(self, *args, **kwargs)
    actions = bound.arguments.get("actions")
    if actions:
        rules = self.describe_rules(listener_arn=None, rule_arns=[bound.arguments["rule_arn"]])
        _carry_secrets(actions, rules[0].actions if rules else [])
    return _modify_rule(self, *args, **kwargs)


ELBv2Backend.create_listener = _create_listener_keeping_secrets
ELBv2Backend.create_rule = _create_rule_keeping_secrets
ELBv2Backend.modify_listener = _modify_listener_keeping_secrets
ELBv2Backend.modify_rule = _modify_rule_keeping_secrets


def _load_balancers_forwarding_to(tg: FakeTargetGroup) -> list[str]:
    backend = _backend_of(tg)
    found = []
    for lb in list(backend.load_balancers.values()):
        for listener in list(lb.listeners.values()):
            actions = list(listener.default_actions or [])
            for rule in list(listener.rules.values()):
                actions += list(rule.actions or [])
            if any(tg.arn in _action_target_groups(a) for a in actions):
                found.append(lb.arn)
                break
    return found


# moto assigns `load_balancer_arns` in __init__ and appends to it: both go to a list nobody reads.
FakeTargetGroup.load_balancer_arns = property(
    _load_balancers_forwarding_to, lambda self, value: None)


def record_secret_sent(environ: dict[str, Any], key: str, service: str, action: str | None) -> None:
    """Notes an ELBv2 request whose parameters carry a ClientSecret (any action's)."""
    if service != "elasticloadbalancing" or not _CLIENT_SECRET_PARAM.search(_peek_body(environ)):
        return
    name = f"elasticloadbalancing:{action}"
    with CALLS_LOCK:
        sent = SECRETS_SENT.setdefault(key, {})
        sent[name] = sent.get(name, 0) + 1


def stored_secrets() -> dict[str, list[str | None]]:
    """The client secret each authenticate-oidc action holds, by listener or rule ARN."""
    stored: dict[str, list[str | None]] = {}
    for regions in list(elbv2_backends.values()):
        for backend in list(regions.values()):
            for lb in list(backend.load_balancers.values()):
                for listener in list(lb.listeners.values()):
                    owners = [(listener.arn, listener.default_actions)]
                    owners += [(r.arn, r.actions) for r in listener.rules.values() if not getattr(r, "is_default", False)]
                    for arn, actions in owners:
                        secrets = [getattr(a, SECRET_ATTR, None) for a in actions or []
                                   if getattr(a, "type", None) == "authenticate-oidc"]
                        if secrets:
                            stored[arn] = secrets
    return stored


# ---------------------------------------------------------------------------
# 9b. An AMI under a chosen id (POST /_greenlight/image-id)
#
# AWS picks every AMI id, and so does moto. The local stack (`greenlight-local up`) gives the
# README's example image its id (`ami-0a1b2c3d4e5f60718`), so that the README's commands work
# against it as written: {"image_id": "ami-<moto's>", "new_id": "ami-<chosen>"} moves the image
# (and its tags) to the new id. 400: the new id is not `ami-` and 8 or 17 hex digits; 404: no
# such image; 409: the new id is taken. Not an AWS API: test and demo plumbing only.
# ---------------------------------------------------------------------------

IMAGE_ID_PATH = "/_greenlight/image-id"
_AMI_ID = re.compile(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})")


def image_id_app(environ, start_response):
    if environ.get("REQUEST_METHOD") != "POST":
        return _json_response(start_response, "405 Method Not Allowed", {"error": "POST only"})
    try:
        doc = json.loads(_peek_body(environ) or b"{}")
        old, new = str(doc["image_id"]), str(doc["new_id"])
    except (ValueError, KeyError, TypeError) as e:
        return _json_response(start_response, "400 Bad Request", {"error": f"want image_id and new_id: {e}"})
    if not _AMI_ID.fullmatch(new):
        return _json_response(start_response, "400 Bad Request", {"error": f"{new!r} is not an AMI id"})
    with STATE_LOCK:
        backends = [b for regions in ec2_backends.values() for b in regions.values() if old in b.amis]
        if not backends:
            return _json_response(start_response, "404 Not Found", {"error": f"no image {old}"})
        backend = backends[0]
        if new in backend.amis and new != old:
            return _json_response(start_response, "409 Conflict", {"error": f"{new} exists"})
        ami = backend.amis.pop(old)
        ami.id = new
        backend.amis[new] = ami
        if old in backend.tags:
            backend.tags[new] = backend.tags.pop(old)
    return _json_response(start_response, "200 OK", {"image_id": new})


def secrets_app(environ, start_response):
    """`GET /_greenlight/client-secrets`: `{"sent": {access key id: {action: n}}, "stored":
    {listener or rule ARN: [secret, ...]}}`."""
    with STATE_LOCK:
        stored = stored_secrets()
    with CALLS_LOCK:
        sent = {key: dict(actions) for key, actions in SECRETS_SENT.items()}
    body = json.dumps({"sent": sent, "stored": stored}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


# --- the health checker ----------------------------------------------------


def _parse_matcher(tg: FakeTargetGroup) -> list[tuple[int, int]]:
    spec = str((getattr(tg, "matcher", None) or {}).get("HttpCode") or "200")
    ranges = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            ranges.append((int(lo), int(hi)))
        elif part:
            ranges.append((int(part), int(part)))
    return ranges or [(200, 200)]


@dataclass
class CheckJob:
    tg: FakeTargetGroup
    target_id: str
    record: TargetHealth
    host: str
    port: int
    path: str
    timeout: float
    matcher: list[tuple[int, int]]
    healthy_threshold: int
    unhealthy_threshold: int


def _http_check(job: CheckJob) -> tuple[bool, str | None, str | None]:
    """One health check: (success, failure reason, failure description)."""
    conn = http.client.HTTPConnection(job.host, job.port, timeout=job.timeout)
    try:
        conn.request("GET", job.path, headers={"User-Agent": "ELB-HealthChecker/2.0"})
        resp = conn.getresponse()
        resp.read()
        if any(lo <= resp.status <= hi for lo, hi in job.matcher):
            return True, None, None
        return (False, "Target.ResponseCodeMismatch",
                f"Health checks failed with these codes: [{resp.status}]")
    except (socket.timeout, TimeoutError):
        return False, "Target.Timeout", REASON_TEXT["Target.Timeout"]
    except OSError:
        return False, "Target.FailedHealthChecks", REASON_TEXT["Target.FailedHealthChecks"]
    except http.client.HTTPException:
        return False, "Target.FailedHealthChecks", REASON_TEXT["Target.FailedHealthChecks"]
    finally:
        conn.close()


def _run_check(job: CheckJob) -> None:
    try:
        ok, reason, description = _http_check(job)
    except Exception:  # never let a check kill the pool
        log.exception("health check crashed")
        ok, reason, description = False, "Target.FailedHealthChecks", None
    with STATE_LOCK:
        rec = job.record
        rec.in_flight = False
        if _extra(job.tg).health.get(job.target_id) is not rec:
            return  # reset meanwhile (deregistered, unused, instance stopped)
        if ok:
            rec.successes += 1
            rec.failures = 0
            if rec.state != "healthy" and rec.successes >= job.healthy_threshold:
                rec.state, rec.reason, rec.description = "healthy", None, None
                log.info("%s in %s -> healthy", job.target_id, job.tg.name)
        else:
            rec.failures += 1
            rec.successes = 0
            if rec.state == "unhealthy" or rec.failures >= job.unhealthy_threshold:
                if rec.state != "unhealthy":
                    log.info("%s in %s -> unhealthy (%s)", job.target_id, job.tg.name, description)
                rec.state, rec.reason, rec.description = "unhealthy", reason, description


def collect_health_checks(now: float) -> list[CheckJob]:
    """Called by the ticker with STATE_LOCK held: due checks + bookkeeping."""
    jobs: list[CheckJob] = []
    for account_backends in list(elbv2_backends.values()):
        for backend in list(account_backends.values()):
            in_use = target_groups_in_use(backend)
            # moto's get_instance_by_id copies every reservation per lookup; this runs every
            # tick for every target, so the instances are indexed once per tick instead.
            instances: dict[str, Instance] | None = None
            for tg in list(backend.target_groups.values()):
                extra = _extra(tg)
                for tid, (_, deadline) in list(extra.draining.items()):
                    if deadline <= now:
                        del extra.draining[tid]  # deregistration complete
                if tg.arn not in in_use or not tg.health_check_enabled:
                    extra.health.clear()  # not checked; restart from initial later
                    continue
                for tid, target in list(tg.targets.items()):
                    if instances is None:
                        instances = {
                            i.id: i
                            for r in backend.ec2_backend.reservations.values()
                            for i in r.instances
                        }
                    instance = instances.get(tid) if tid.startswith("i-") else None
                    if instance is None or instance.state != "running":
                        extra.health.pop(tid, None)
                        continue
                    rec = extra.health.setdefault(tid, TargetHealth())
                    if rec.in_flight or now < rec.next_check:
                        continue
                    interval = float(tg.health_check_interval_seconds) * CFG.time_scale
                    rec.next_check = now + interval
                    rec.in_flight = True
                    jobs.append(CheckJob(
                        tg=tg, target_id=tid, record=rec,
                        host=instance.private_ip_address,
                        port=int(_health_port(tg, target)),
                        path=tg.health_check_path or "/",
                        timeout=max(0.05, float(tg.health_check_timeout_seconds) * CFG.time_scale),
                        matcher=_parse_matcher(tg),
                        healthy_threshold=int(tg.healthy_threshold_count),
                        unhealthy_threshold=int(tg.unhealthy_threshold_count),
                    ))
    return jobs


# ---------------------------------------------------------------------------
# 5. EventBridge -> SQS: the full event envelope
#
# AWS (EventBridge "Amazon EventBridge events"): a target without Input /
# InputPath / InputTransformer receives the whole event: version, id,
# detail-type, source, account, time, region, resources, detail. moto's
# default template omits `account`.
# ---------------------------------------------------------------------------

_EVENT_FIELDS = ("version", "id", "detail-type", "source", "account", "time",
                 "region", "resources", "detail")
_orig_template_parse = EventTemplateParser.parse


def _template_parse(input_template, input_paths_map, event):
    if not input_template and not input_paths_map:
        return {k: event[k] for k in _EVENT_FIELDS if k in event}
    return _orig_template_parse(input_template, input_paths_map, event)


EventTemplateParser.parse = staticmethod(_template_parse)


# ---------------------------------------------------------------------------
# 5b. DynamoDB Streams
#
# AWS ("Change data capture for DynamoDB Streams"): "If you perform a PutItem or
# UpdateItem operation that does not change any data in an item, DynamoDB Streams does
# not write a stream record for that operation." moto writes one for every write.
# A table's stream is one for the table's life: moto's TransactWriteItems copies every
# table it touches and puts the copy back when the transaction is cancelled, which gave
# the table a new stream object (readers' shard iterators kept reading the old one, and saw
# nothing written after any cancelled transaction) and copied every record (a long stream
# made every transaction slower). Here the copy shares the stream, and a cancelled
# transaction takes back the records its applied operations had added.
# ---------------------------------------------------------------------------

_orig_stream_add = StreamShard.add


def _stream_add(self, old, new) -> None:
    if old is not None and new is not None and old.to_json() == new.to_json():
        return
    _orig_stream_add(self, old, new)


def _stream_deepcopy(self, memo):
    memo[id(self)] = self
    return self


_orig_transact_write_items = DynamoDBBackend.transact_write_items


def _transact_write_items(self, transact_items):
    lengths = [(t.stream_shard, len(t.stream_shard.items)) for t in self.tables.values()
               if t.stream_shard is not None]
    try:
        return _orig_transact_write_items(self, transact_items)
    except Exception:
        for shard, length in lengths:
            del shard.items[length:]
        raise


StreamShard.add = _stream_add
StreamShard.__deepcopy__ = _stream_deepcopy
DynamoDBBackend.transact_write_items = _transact_write_items


# ---------------------------------------------------------------------------
# Background ticker: pending -> running, health-check scheduling
# ---------------------------------------------------------------------------


class Ticker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="ticker", daemon=True)
        self.stop_event = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="healthcheck")

    def run(self) -> None:
        while not self.stop_event.wait(CFG.tick_seconds):
            try:
                now = time.monotonic()
                with STATE_LOCK:
                    promote_pending_instances(now)
                    jobs = collect_health_checks(now)
                for job in jobs:
                    self.pool.submit(_run_check, job)
            except Exception:
                log.exception("ticker iteration failed")


# ---------------------------------------------------------------------------
# 6. Serialised request handling
# ---------------------------------------------------------------------------

_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/")

# IAM's prefix for a SigV4 signing name where the two differ.
_IAM_PREFIX = {"monitoring": "cloudwatch"}

# Which access key id called which actions ("service:Action", as IAM names them), so tests
# can check each function's IAM role against what its process really called. A call that
# signs with an access key id is recorded under it whatever moto answers.
CALLS: dict[str, set[str]] = {}
CALLS_LOCK = threading.Lock()
CALLS_PATH = "/_greenlight/calls"


def _peek_body(environ: dict[str, Any]) -> bytes:
    """The request body, leaving it readable for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _query_action(environ: dict[str, Any]) -> str | None:
    """`Action=` of a query-protocol request (URL or form body)."""
    for source in (environ.get("QUERY_STRING", ""), _peek_body(environ).decode("utf-8", "replace")):
        match = re.search(r"(?:^|&)Action=([A-Za-z0-9]+)", source)
        if match:
            return match.group(1)
    return None


def _s3_action(environ: dict[str, Any]) -> str:
    """The S3 API action of a path-style request."""
    parts = [p for p in environ.get("PATH_INFO", "").split("/") if p]
    method = environ.get("REQUEST_METHOD", "GET")
    on_object = len(parts) >= 2
    if on_object:
        return {"GET": "GetObject", "HEAD": "GetObject", "PUT": "PutObject", "DELETE": "DeleteObject"}.get(
            method, f"{method}Object")
    return {"GET": "ListBucket", "HEAD": "ListBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(
        method, f"{method}Bucket")


def _action(environ: dict[str, Any], service: str) -> str | None:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:  # JSON protocol: `<Service_Version>.<Action>`
        return target.rsplit(".", 1)[-1]
    if service == "s3":
        return _s3_action(environ)
    if service in _REST_JSON_SERVICES:  # REST-JSON (Lambda): method and path (section 13)
        return _rest_json_action(environ, service)
    return _query_action(environ)


def record_call(environ: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """Records the call's access key and action; returns its (key, signing service, action)."""
    match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not match:
        return None
    key, service = match.group(1), match.group(2)
    if service == "sqs" and _is_sqs_receive(environ):
        action = "ReceiveMessage"  # no body peek: a long poll must not wait on anything
    else:
        action = _action(environ, service)
    if action:
        name = f"{_IAM_PREFIX.get(service, service)}:{action}"
        with CALLS_LOCK:
            CALLS.setdefault(key, set()).add(name)
            calls = _usage(key).calls
            calls[name] = calls.get(name, 0) + 1
    return key, service, action


def calls_app(environ, start_response):
    """`GET /_greenlight/calls`: `{access key id: [service:Action, ...]}`."""
    with CALLS_LOCK:
        body = json.dumps({key: sorted(actions) for key, actions in CALLS.items()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _is_sqs_receive(environ: dict[str, Any]) -> bool:
    """ReceiveMessage may long-poll (WaitTimeSeconds) and must not hold the lock."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:  # JSON protocol (current SDKs)
        return target.endswith(".ReceiveMessage")
    if "Action=ReceiveMessage" in environ.get("QUERY_STRING", ""):
        return True
    # Legacy query protocol: the action is in the form body; peek at it.
    return b"Action=ReceiveMessage" in _peek_body(environ)


def locked_app(app):
    """Serialise requests on STATE_LOCK, except SQS ReceiveMessage (SQS queues
    have their own condition variable, which long polling waits on) and Lambda Invoke (its
    handler may call the emulator back; section 13). Every signed call is
    recorded in CALLS (and counted in USAGE) first, then meets the fate the fault injector
    draws for its key. DynamoDB requests that reach moto are metered (section 8)."""

    def call(environ, start_response):
        if environ.get("greenlight.unlocked"):
            return app(environ, start_response)
        with STATE_LOCK:
            meter = environ.get(METER_MARK)
            if meter is not None:
                return metered_dynamodb(app, environ, start_response, *meter)
            return app(environ, start_response)

    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO")
        if path == CALLS_PATH:
            return calls_app(environ, start_response)
        if path == FAULTS_PATH:
            return faults_app(environ, start_response)
        if path == USAGE_PATH:
            return usage_app(environ, start_response)
        if path in alb_data_plane.ADMIN_PATHS:
            return alb_data_plane.admin_app(environ, start_response)
        if path == SECRETS_PATH:
            return secrets_app(environ, start_response)
        if path == IMAGE_ID_PATH:
            return image_id_app(environ, start_response)
        if path == LAMBDA_HANDLERS_PATH:
            return lambda_handlers_app(environ, start_response)
        signed = record_call(environ)
        if signed:
            record_secret_sent(environ, *signed)
        if signed and signed[1] == "sqs" and _is_sqs_receive(environ):
            environ["greenlight.unlocked"] = True
        function_part = _lambda_invocation(environ, signed[1] if signed else None)
        if function_part is not None:  # served by intercept_lambda, the lock not held (section 13)
            environ[LAMBDA_INVOKE_MARK] = function_part
            environ["greenlight.unlocked"] = True
        if signed and signed[1] == "dynamodb":
            environ[METER_MARK] = (signed[0], signed[2], _credential_region(environ))
        fault = draw_fault(*signed) if signed else None
        if fault is not None:
            return with_fault(fault, signed[1], environ, start_response, call)
        return call(environ, start_response)

    return wsgi


# ---------------------------------------------------------------------------
# 7. Fault injection (per access key id)
#
# AWS APIs throttle, fail with 5xx, drop connections and slow down; the SDKs retry those
# ("Error retries and exponential backoff in AWS", "Retry behavior" in the SDK reference).
# A test gives its handlers their own access key id and asks for faults on that key only
# (fixture setup and assertions sign with another key and see none):
#
#   POST   /_greenlight/faults  {"access_key": "AKID…", "rate": 0.15, "seed": 7,
#                                "latency_ms": [0, 40], "kinds": [...], "services": [...]}
#   GET    /_greenlight/faults[?access_key=AKID…]   what was injected (per kind, per action)
#   DELETE /_greenlight/faults[?access_key=AKID…]   stop (the counts stay readable)
#
# Each request signed with the key (and of one of `services`, IAM prefixes, if given) gets
# a delay drawn from `latency_ms`, and with probability `rate` one fault of `kinds`, all
# drawn from a PRNG seeded with `seed` (a fixed number of draws per request, so the n-th
# request of a key always meets the same fate). The kinds:
#   throttle      the service's throttling error in its protocol's wire shape, before moto;
#   error-before  HTTP 500 or 503 (InternalError / ServiceUnavailable), before moto;
#   error-after   moto applies the request, then the client gets a 500 or 503 instead of
#                 the answer (a write happened, its response was lost);
#   reset-before  the connection is reset (TCP RST, no response) before moto;
#   reset-after   moto applies the request, then the connection is reset.
# ---------------------------------------------------------------------------

FAULTS_PATH = "/_greenlight/faults"
FAULT_KINDS = ("throttle", "error-before", "error-after", "reset-before", "reset-after")
RESET_MARK = "greenlight.reset"  # environ key: GreenlightRequestHandler resets the connection

# (status, code, message) per protocol. EC2's query dialect, awsQuery (ELBv2, CloudWatch),
# awsJson (DynamoDB, Step Functions, EventBridge, SQS, Secrets Manager), restXml (S3),
# restJson (Lambda: its modelled TooManyRequestsException, HTTP 429, and ServiceException).
_THROTTLE = {
    "ec2": (503, "RequestLimitExceeded", "Request limit exceeded."),
    "query": (400, "Throttling", "Rate exceeded"),
    "json": (400, "ThrottlingException", "Rate exceeded"),
    "rest-xml": (503, "SlowDown", "Please reduce your request rate."),
    "rest-json": (429, "TooManyRequestsException", "Rate Exceeded."),
}
_SERVER_ERROR = {
    500: {
        "ec2": "InternalError",
        "query": "InternalFailure",
        "json": "InternalFailure",
        "rest-xml": "InternalError",
        "rest-json": "ServiceException",
    },
    503: {
        "ec2": "Unavailable",
        "query": "ServiceUnavailable",
        "json": "ServiceUnavailable",
        "rest-xml": "ServiceUnavailable",
        "rest-json": "ServiceException",
    },
}
_SERVER_MESSAGE = {
    500: "We encountered an internal error. Please try again.",
    503: "The service is unavailable. Please try again shortly.",
}
# DynamoDB's JSON errors carry its namespace; its 500 is InternalServerError.
_JSON_NAMESPACE = {"dynamodb": "com.amazonaws.dynamodb.v20120810#"}
_JSON_CODE = {("dynamodb", "InternalFailure"): "InternalServerError"}
_QUERY_XMLNS = {
    "elasticloadbalancing": "https://elasticloadbalancing.amazonaws.com/doc/2015-12-01/",
    "monitoring": "http://monitoring.amazonaws.com/doc/2010-08-01/",
}


@dataclass
class FaultPlan:
    access_key: str
    rate: float
    seed: int
    latency_ms: tuple[float, float] = (0.0, 0.0)
    kinds: tuple[str, ...] = FAULT_KINDS
    services: frozenset[str] | None = None  # IAM prefixes (ec2, dynamodb, ...); None = all
    active: bool = True
    rng: random.Random = field(default_factory=random.Random)
    requests: int = 0
    latency_ms_total: float = 0.0
    injected: dict[str, int] = field(default_factory=dict)
    by_action: dict[str, dict[str, int]] = field(default_factory=dict)

    @staticmethod
    def parse(doc: Any) -> "FaultPlan":
        if not isinstance(doc, dict):
            raise ValueError("expected a JSON object")
        key = doc.get("access_key")
        if not isinstance(key, str) or not key:
            raise ValueError("access_key: a non-empty string is required")
        rate = doc.get("rate", 0.0)
        if not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError("rate: a number in [0, 1] is required")
        seed = doc.get("seed", 0)
        if not isinstance(seed, int):
            raise ValueError("seed: an integer is required")
        latency = doc.get("latency_ms", [0, 0])
        if (not isinstance(latency, list) or len(latency) != 2
                or not all(isinstance(v, (int, float)) and v >= 0 for v in latency) or latency[0] > latency[1]):
            raise ValueError("latency_ms: [low, high] with 0 <= low <= high is required")
        kinds = doc.get("kinds", list(FAULT_KINDS))
        if not isinstance(kinds, list) or not kinds or any(k not in FAULT_KINDS for k in kinds):
            raise ValueError(f"kinds: a non-empty list of {list(FAULT_KINDS)} is required")
        services = doc.get("services")
        if services is not None and (not isinstance(services, list)
                                     or not all(isinstance(s, str) for s in services)):
            raise ValueError("services: a list of IAM service prefixes (ec2, dynamodb, ...) or null")
        return FaultPlan(
            access_key=key, rate=float(rate), seed=seed,
            latency_ms=(float(latency[0]), float(latency[1])), kinds=tuple(kinds),
            services=frozenset(services) if services is not None else None,
            rng=random.Random(seed),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "access_key": self.access_key, "active": self.active, "rate": self.rate, "seed": self.seed,
            "latency_ms": list(self.latency_ms), "kinds": list(self.kinds),
            "services": sorted(self.services) if self.services is not None else None,
            "requests": self.requests, "latency_ms_total": round(self.latency_ms_total, 1),
            "injected": dict(sorted(self.injected.items())), "total": sum(self.injected.values()),
            "by_action": {a: dict(sorted(k.items())) for a, k in sorted(self.by_action.items())},
        }


@dataclass
class Fault:
    latency_s: float
    kind: str | None
    status: int  # for error-before / error-after


FAULTS: dict[str, FaultPlan] = {}
FAULTS_LOCK = threading.Lock()


def draw_fault(key: str, service: str, action: str | None) -> Fault | None:
    """The fate of one request signed with `key` (None: no plan for it)."""
    iam_action = f"{_IAM_PREFIX.get(service, service)}:{action or 'Unknown'}"
    with FAULTS_LOCK:
        plan = FAULTS.get(key)
        if plan is None or not plan.active:
            return None
        if plan.services is not None and _IAM_PREFIX.get(service, service) not in plan.services:
            return None
        rng = plan.rng
        # Always four draws, whatever the outcome: the n-th request's fate depends only on n.
        latency_ms = rng.uniform(*plan.latency_ms)
        hit = rng.random() < plan.rate
        kind = plan.kinds[min(int(rng.random() * len(plan.kinds)), len(plan.kinds) - 1)]
        status = 503 if rng.random() < 0.5 else 500
        plan.requests += 1
        plan.latency_ms_total += latency_ms
        if not hit:
            return Fault(latency_ms / 1000.0, None, status)
        plan.injected[kind] = plan.injected.get(kind, 0) + 1
        per_action = plan.by_action.setdefault(iam_action, {})
        per_action[kind] = per_action.get(kind, 0) + 1
    log.info("fault: %s for %s (%s)", kind, iam_action, key)
    return Fault(latency_ms / 1000.0, kind, status)


def _protocol(service: str, environ: dict[str, Any]) -> str:
    if environ.get("HTTP_X_AMZ_TARGET"):
        return "json"
    if service == "s3":
        return "rest-xml"
    if service == "ec2":
        return "ec2"
    if service in _REST_JSON_SERVICES:
        return "rest-json"
    return "query"


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fault_response(service: str, environ: dict[str, Any], kind: str, status: int) -> tuple[int, list, bytes]:
    """(status, headers, body) of a throttling or server error, as `service` sends it."""
    protocol = _protocol(service, environ)
    if kind == "throttle":
        status, code, message = _THROTTLE[protocol]
    else:
        code, message = _SERVER_ERROR[status][protocol], _SERVER_MESSAGE[status]
    request_id = str(uuid.uuid4())
    if protocol == "json":
        code = _JSON_CODE.get((service, code), code)
        content_type = environ.get("CONTENT_TYPE") or ""
        if not content_type.startswith("application/x-amz-json"):
            content_type = "application/x-amz-json-1.0"
        body = json.dumps({"__type": _JSON_NAMESPACE.get(service, "") + code, "message": message}).encode()
        headers = [("Content-Type", content_type), ("x-amzn-RequestId", request_id)]
        if service == "sqs":  # awsQueryCompatible: the query-protocol code and fault
            headers.append(("x-amzn-query-error", f"{code};{'Sender' if status < 500 else 'Receiver'}"))
    elif protocol == "rest-json":  # the code in x-amzn-ErrorType; Lambda's members (`Type`, ...)
        doc: dict[str, Any] = {"Type": "User" if status < 500 else "Service"}
        if kind == "throttle":
            doc.update({"message": message, "Reason": "CallerRateLimitExceeded"})
        else:
            doc["Message"] = message
        body = json.dumps(doc).encode()
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", code),
                   ("x-amzn-RequestId", request_id)]
    elif protocol == "ec2":
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Response><Errors><Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>"
                f"</Error></Errors><RequestID>{request_id}</RequestID></Response>").encode()
        headers = [("Content-Type", "text/xml;charset=UTF-8")]
    elif protocol == "rest-xml":
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>"
                f"<RequestId>{request_id[:16]}</RequestId><HostId>greenlight-fault</HostId></Error>").encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id[:16]),
                   ("x-amz-id-2", "greenlight-fault")]
    else:
        xmlns = _QUERY_XMLNS.get(service)
        opening = f'<ErrorResponse xmlns="{xmlns}">' if xmlns else "<ErrorResponse>"
        fault_type = "Sender" if status < 500 else "Receiver"
        body = (f"{opening}<Error><Type>{fault_type}</Type><Code>{code}</Code>"
                f"<Message>{_xml_escape(message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    if environ.get("REQUEST_METHOD") == "HEAD":
        body = b""  # HEAD answers carry no body (S3's HeadObject/HeadBucket errors neither)
    headers.append(("Content-Length", str(len(body))))
    return status, headers, body


_REASONS = {400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _send_fault(service, environ, start_response, kind, status):
    status, headers, body = fault_response(service, environ, kind, status)
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [body]


def _reset(environ: dict[str, Any]):
    """No response: GreenlightRequestHandler resets the connection (TCP RST)."""
    environ[RESET_MARK] = True
    raise ConnectionResetError("greenlight fault: connection reset")


def _apply_and_lose(call, environ: dict[str, Any]) -> None:
    """Lets moto apply the request and throws its answer away."""

    def discard(status, headers, exc_info=None):
        return lambda data: None

    body = call(environ, discard)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def with_fault(fault: Fault, service: str, environ, start_response, call):
    """Serves a request whose fate was drawn: delayed, and maybe never reaching moto, or
    reaching it and losing its answer."""
    if fault.latency_s > 0:
        time.sleep(fault.latency_s)
    if fault.kind is None:
        return call(environ, start_response)
    if fault.kind in ("error-after", "reset-after"):
        _apply_and_lose(call, environ)
    if fault.kind in ("reset-before", "reset-after"):
        return _reset(environ)
    return _send_fault(service, environ, start_response, fault.kind, fault.status)


def _json_response(start_response, status: str, doc: Any):
    body = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def faults_app(environ, start_response):
    """`POST` a plan, `GET` the counts, `DELETE` to stop (see section 7)."""
    method = environ.get("REQUEST_METHOD", "GET")
    query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    key = query.get("access_key")
    if method == "POST":
        try:
            plan = FaultPlan.parse(json.loads(_peek_body(environ) or b"null"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return _json_response(start_response, "400 Bad Request", {"error": str(exc)})
        with FAULTS_LOCK:
            FAULTS[plan.access_key] = plan
            doc = plan.to_json()
        log.info("faults for %s: rate %s, seed %s, latency %s ms, kinds %s, services %s", plan.access_key,
                 plan.rate, plan.seed, list(plan.latency_ms), list(plan.kinds), doc["services"])
        return _json_response(start_response, "200 OK", doc)
    if method not in ("GET", "DELETE"):
        return _json_response(start_response, "405 Method Not Allowed", {"error": "GET, POST or DELETE"})
    with FAULTS_LOCK:
        plans = [p for k, p in FAULTS.items() if key is None or k == key]
        if method == "DELETE":
            for plan in plans:
                plan.active = False
        doc = {p.access_key: p.to_json() for p in plans}
    if key is not None:
        if not plans:
            return _json_response(start_response, "404 Not Found", {"error": f"no faults for {key}"})
        return _json_response(start_response, "200 OK", doc[key])
    return _json_response(start_response, "200 OK", doc)


# ---------------------------------------------------------------------------
# 6b. Request dispatch without a file-system walk per request
#
# moto's DomainDispatcherApplication finds each request's backend by listing moto's package
# directory (os.listdir, then isdir on every entry) and then matching the host against every
# backend's URL patterns, twice per request. The package does not change while we run and a
# host always names the same backend, so both are computed once: the same answers, without
# a few hundred stat calls and regex matches per request.
# ---------------------------------------------------------------------------

import moto.backends as _moto_backends  # noqa: E402

_MOTO_MODULES = tuple(_moto_backends.list_of_moto_modules())
_moto_backends.list_of_moto_modules = lambda: _MOTO_MODULES

_orig_backend_for_host = DomainDispatcherApplication.get_backend_for_host
_BACKEND_FOR_HOST: dict[str | None, Any] = {}


def _backend_for_host(self: DomainDispatcherApplication, host: str | None) -> Any:
    """Called under the dispatcher's own lock (get_application)."""
    if host not in _BACKEND_FOR_HOST:
        _BACKEND_FOR_HOST[host] = _orig_backend_for_host(self, host)
    return _BACKEND_FOR_HOST[host]


DomainDispatcherApplication.get_backend_for_host = _backend_for_host


class GreenlightRequestHandler(MotoRequestHandler):
    """moto's request handler, plus the connection reset the fault injector asks for: no
    response, SO_LINGER 0 and close, so the client sees ECONNRESET as from a dropped
    connection (the socket's read file is closed first, or close() would not close it)."""

    def run_wsgi(self) -> None:
        super().run_wsgi()
        if getattr(self, "environ", {}).get(RESET_MARK):
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()
                self.connection.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# 8. Usage accounting (per access key id), for benchmarks
#
#   GET    /_greenlight/usage[?access_key=AKID…]   what the key(s) used
#   DELETE /_greenlight/usage[?access_key=AKID…]   the same answer, then forget it
#
#   {"AKID…": {"calls": {"ec2:RunInstances": 3, ...},
#              "dynamodb": {"read_units": 12.5, "write_units": 40.0,
#                           "conditional_check_failures": 2, "transaction_conflicts": 0}}}
#
# `calls` counts every signed request as IAM's `service:Action` (the CALLS naming), faulted
# ones included. DynamoDB requests that reach moto are metered: the wrapper reads the items
# a request touches straight from moto's backend before and after it (under STATE_LOCK),
# computes the capacity units AWS would charge, accumulates them per key, and puts them into
# the answer's ConsumedCapacity when the request asks (ReturnConsumedCapacity TOTAL or
# INDEXES; moto's own values are constants). A request that never reached moto (throttle,
# error-before, reset-before) consumes nothing; one whose answer was lost (error-after,
# reset-after) is charged. Its answer's error type counts conflicts:
# `conditional_check_failures` (ConditionalCheckFailedException, or a
# TransactionCanceledException with a ConditionalCheckFailed reason) and
# `transaction_conflicts` (TransactionConflictException, or a TransactionConflict reason).
#
# Capacity rules, as AWS documents them ("Read/write capacity mode" and "DynamoDB read and
# write operations", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
# capacity-mode.html and read-write-operations.html; "DynamoDB item sizes and formats",
# CapacityUnitCalculations.html):
#   * item size: the sum over its attributes of the UTF-8 length of the name plus the value's
#     size: S the UTF-8 bytes; N about 1 byte per two significant digits + 1 (leading and
#     trailing zeroes trimmed); B the raw bytes; BOOL and NULL 1; L and M 3 bytes plus their
#     elements, each element 1 byte more (a map element also counts its name); SS/NS/BS the
#     sum of their elements.
#   * reads: the item size rounded up to 4 KB, one unit per 4 KB strongly consistent
#     (ConsistentRead true), half that eventually consistent (ConsistentRead false or absent,
#     the default), twice that in TransactGetItems. An item that does not exist still costs
#     the minimum (0.5, 1 or 2). BatchGetItem: each item as its own GetItem. Query and Scan:
#     the sizes of the items evaluated (before FilterExpression and projection, within Limit
#     and the 1 MB page; an index's projected items for an index) added up and rounded up to
#     4 KB once per request, the minimum when none is.
#   * reads are charged on the whole item, not on what ProjectionExpression returns.
#   * writes (PutItem, UpdateItem, DeleteItem, each BatchWriteItem item): the larger of the
#     item's size before and after, rounded up to 1 KB, 1 unit per KB, minimum 1. A write
#     whose condition fails is still charged (on the existing item's size, minimum 1);
#     TransactWriteItems: twice that per item (ConditionCheck on the checked item's size),
#     also when the transaction is cancelled.
# Approximations: the number size formula is AWS's own "approximately"; writes to secondary
# indexes (which AWS charges on top) are not charged; PartiQL (ExecuteStatement, ...) is
# not metered; the legacy QueryFilter/ScanFilter parameters are applied inside moto's
# evaluation, so the items they drop are not charged (FilterExpression's are); a cancelled
# transaction is charged as if each item's write had failed its condition.
# ---------------------------------------------------------------------------

USAGE_PATH = "/_greenlight/usage"
METER_MARK = "greenlight.meter"  # environ key: (access key, action, region) of a DynamoDB call

_CREDENTIAL_REGION = re.compile(r"Credential=[^/]+/[^/]+/([^/]+)/")


@dataclass
class Usage:
    calls: dict[str, int] = field(default_factory=dict)
    read_units: float = 0.0
    write_units: float = 0.0
    conditional_check_failures: int = 0
    transaction_conflicts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": dict(sorted(self.calls.items())),
            "dynamodb": {
                "read_units": float(self.read_units), "write_units": float(self.write_units),
                "conditional_check_failures": self.conditional_check_failures,
                "transaction_conflicts": self.transaction_conflicts,
            },
        }


# Per access key id; guarded by CALLS_LOCK (taken after STATE_LOCK, never before it).
USAGE: dict[str, Usage] = {}


def _usage(key: str) -> Usage:
    """The key's entry (CALLS_LOCK held)."""
    usage = USAGE.get(key)
    if usage is None:
        usage = USAGE[key] = Usage()
    return usage


def usage_app(environ, start_response):
    """`GET` the usage of one key (`?access_key=`) or of every key, `DELETE` to reset it
    (answering what it was)."""
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "DELETE"):
        return _json_response(start_response, "405 Method Not Allowed", {"error": "GET or DELETE"})
    keys = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("access_key")
    with CALLS_LOCK:
        if keys:
            doc = {key: USAGE.get(key, Usage()).to_json() for key in keys}
        else:
            doc = {key: usage.to_json() for key, usage in sorted(USAGE.items())}
        if method == "DELETE":
            for key in doc:
                USAGE.pop(key, None)
    return _json_response(start_response, "200 OK", doc)


def _credential_region(environ: dict[str, Any]) -> str:
    match = _CREDENTIAL_REGION.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else os.environ.get("AWS_DEFAULT_REGION", "us-east-1")


def _moto_account(environ: dict[str, Any], key: str) -> str:
    """The account moto serves the request from (BaseResponse.get_current_account)."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"]
    from moto.iam.models import get_account_id_from

    return get_account_id_from(key)


# --- item sizes ("DynamoDB item sizes and formats") -------------------------------------


def _type_value(av: Any) -> tuple[str, Any]:
    """(type, value) of a wire AttributeValue ({"S": "x"}) or a moto DynamoType."""
    if isinstance(av, dict):
        return next(iter(av.items())) if len(av) == 1 else ("NULL", None)
    return av.type, av.value


def _number_size(text: Any) -> int:
    try:
        digits = len(Decimal(str(text)).normalize().as_tuple().digits)
    except (InvalidOperation, ValueError):
        digits = len(re.sub(r"\D", "", str(text)).strip("0")) or 1
    return (digits + 1) // 2 + 1


def _binary_size(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    try:
        return len(base64.b64decode(value))
    except (ValueError, TypeError):
        return len(str(value)) * 3 // 4


def _value_size(av: Any) -> int:
    kind, value = _type_value(av)
    if kind == "S":
        return len(value.encode("utf-8"))
    if kind == "N":
        return _number_size(value)
    if kind == "B":
        return _binary_size(value)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in value)
    if kind == "M":
        return 3 + sum(1 + len(name.encode("utf-8")) + _value_size(element) for name, element in value.items())
    if kind == "SS":
        return sum(len(element.encode("utf-8")) for element in value)
    if kind == "NS":
        return sum(_number_size(element) for element in value)
    if kind == "BS":
        return sum(_binary_size(element) for element in value)
    return 0


def item_size(attributes: Any) -> int:
    """The size of an item (a moto Item, or its attributes as a dict of AttributeValues)."""
    attrs = getattr(attributes, "attrs", attributes)
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in attrs.items())


# --- what Query and Scan evaluate -----------------------------------------------------------
#
# Table.query and Table.scan evaluate items (key condition, Limit, 1 MB page, index
# projection), then apply the FilterExpression and the ProjectionExpression as their last
# steps. While a metered request runs, they are called without those two so that the sizes
# of the evaluated items can be recorded, and the two are applied here exactly as moto does.

_EVALUATED = threading.local()  # .sizes: a list while a metered request runs on this thread


def _evaluating(original, filter_param: str, projection_param: str):
    signature = inspect.signature(original)

    def wrapper(self, *args, **kwargs):
        sizes = getattr(_EVALUATED, "sizes", None)
        if sizes is None:
            return original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        filter_expression = bound.arguments.get(filter_param)
        projection = bound.arguments.get(projection_param)
        bound.arguments[filter_param] = None
        bound.arguments[projection_param] = None
        results, scanned_count, last_evaluated_key = original(*bound.args, **bound.kwargs)
        sizes.extend(item_size(item) for item in results)
        if filter_expression is not None:
            results = [item for item in results if filter_expression.expr(item)]
        if projection:
            results = [item.project(projection) for item in results]
        return results, scanned_count, last_evaluated_key

    return functools.wraps(original)(wrapper)


DynamoTable.query = _evaluating(DynamoTable.query, "filter_expression", "projection_expressions")
DynamoTable.scan = _evaluating(DynamoTable.scan, "filter_expression", "projection_expression")


# --- metering one request ---------------------------------------------------------------------

_READ_UNIT, _WRITE_UNIT = 4096, 1024


@dataclass
class _Touch:
    """One item a request reads or writes."""
    table: str
    key: dict[str, Any]
    write: bool
    factor: float  # reads: 0.5 eventually consistent, 1 strongly, 2 transactional; writes: 1 or 2
    before: int | None = None  # the item's size before the request (None: no such item)


def _table(backend: Any, name: str) -> Any | None:
    try:
        return backend.get_table(name)
    except Exception:  # noqa: BLE001 - ResourceNotFoundException and friends: nothing to meter
        return None


def _stored_size(backend: Any, table_name: str, key: dict[str, Any]) -> int | None:
    try:
        item = backend.get_item(table_name, key)
    except Exception:  # noqa: BLE001 - a malformed key: moto answers the client with the error
        return None
    return item_size(item) if item is not None else None


def _key_of(backend: Any, table_name: str, item: dict[str, Any]) -> dict[str, Any]:
    table = _table(backend, table_name)
    if table is None:
        return {}
    names = [n for n in (table.hash_key_attr, table.range_key_attr) if n]
    return {n: item[n] for n in names if n in item}


def _touches(backend: Any, action: str, request: dict[str, Any]) -> list[_Touch]:
    """The items a request reads or writes, by key."""
    touches: list[_Touch] = []
    consistent = 1.0 if request.get("ConsistentRead") else 0.5
    if action == "GetItem":
        touches.append(_Touch(request.get("TableName", ""), request.get("Key") or {}, False, consistent))
    elif action == "BatchGetItem":
        for table, spec in (request.get("RequestItems") or {}).items():
            factor = 1.0 if spec.get("ConsistentRead") else 0.5
            touches += [_Touch(table, key, False, factor) for key in spec.get("Keys") or []]
    elif action == "TransactGetItems":
        for entry in request.get("TransactItems") or []:
            get = entry.get("Get") or {}
            touches.append(_Touch(get.get("TableName", ""), get.get("Key") or {}, False, 2.0))
    elif action == "PutItem":
        table = request.get("TableName", "")
        touches.append(_Touch(table, _key_of(backend, table, request.get("Item") or {}), True, 1.0))
    elif action in ("UpdateItem", "DeleteItem"):
        touches.append(_Touch(request.get("TableName", ""), request.get("Key") or {}, True, 1.0))
    elif action == "BatchWriteItem":
        for table, writes in (request.get("RequestItems") or {}).items():
            for write in writes:
                if "PutRequest" in write:
                    key = _key_of(backend, table, write["PutRequest"].get("Item") or {})
                else:
                    key = (write.get("DeleteRequest") or {}).get("Key") or {}
                touches.append(_Touch(table, key, True, 1.0))
    elif action == "TransactWriteItems":
        for entry in request.get("TransactItems") or []:
            for kind, spec in entry.items():
                table = spec.get("TableName", "")
                key = _key_of(backend, table, spec.get("Item") or {}) if kind == "Put" else spec.get("Key") or {}
                touches.append(_Touch(table, key, True, 2.0))
    return touches


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


class _Consumed:
    """Capacity units per table (in the order met), and per index for Query/Scan."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, float]] = {}

    def add(self, table: str, read: float = 0.0, write: float = 0.0) -> None:
        entry = self.tables.setdefault(table, {"read": 0.0, "write": 0.0})
        entry["read"] += read
        entry["write"] += write

    def read_units(self) -> float:
        return sum(entry["read"] for entry in self.tables.values())

    def write_units(self) -> float:
        return sum(entry["write"] for entry in self.tables.values())

    def answer(self, mode: str, index: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """ConsumedCapacity objects (API reference "ConsumedCapacity"), one per table."""
        out = []
        for table, entry in self.tables.items():
            units: dict[str, float] = {"CapacityUnits": entry["read"] + entry["write"]}
            if entry["read"]:
                units["ReadCapacityUnits"] = entry["read"]
            if entry["write"]:
                units["WriteCapacityUnits"] = entry["write"]
            doc: dict[str, Any] = {"TableName": table, **units}
            if mode == "INDEXES":
                if index is None:
                    doc["Table"] = dict(units)
                else:
                    doc["Table"] = {"CapacityUnits": 0.0}
                    doc[index[0]] = {index[1]: dict(units)}
            out.append(doc)
        return out


def _index_kind(backend: Any, table_name: str, index_name: str) -> str:
    table = _table(backend, table_name)
    local = {i.name for i in (getattr(table, "indexes", None) or [])}
    return "LocalSecondaryIndexes" if index_name in local else "GlobalSecondaryIndexes"


def _table_name(backend: Any, name: str) -> str:
    """A table's name (requests may name it by ARN)."""
    table = _table(backend, name)
    return table.name if table is not None else name


def _conflicts(error: dict[str, Any]) -> tuple[int, int]:
    """(conditional check failures, transaction conflicts) an error answer reports."""
    kind = str(error.get("__type", ""))
    if kind.endswith("ConditionalCheckFailedException"):
        return 1, 0
    if kind.endswith("TransactionConflictException"):
        return 0, 1
    if kind.endswith("TransactionCanceledException"):
        codes = {str((reason or {}).get("Code")) for reason in error.get("CancellationReasons") or []}
        return int("ConditionalCheckFailed" in codes), int("TransactionConflict" in codes)
    return 0, 0


def _request_json(environ: dict[str, Any]) -> dict[str, Any] | None:
    if not environ.get("CONTENT_LENGTH"):
        return None  # no length (chunked): leave the body alone for moto
    body = _peek_body(environ)
    try:
        if environ.get("HTTP_CONTENT_ENCODING") == "gzip":
            body = gzip.decompress(body)
        doc = json.loads(body or b"{}")
    except (ValueError, OSError):
        return None
    return doc if isinstance(doc, dict) else None


def _charged(status: int, error: dict[str, Any]) -> bool:
    """Does the request consume capacity? Yes when it succeeded, and when it was evaluated
    and refused by its condition (a failed conditional write, a cancelled transaction)."""
    if status == 200:
        return True
    kind = str(error.get("__type", ""))
    return kind.endswith("ConditionalCheckFailedException") or kind.endswith("TransactionCanceledException")


def _consumed(backend: Any, action: str, request: dict[str, Any], touches: list[_Touch],
              evaluated: list[int], answer: dict[str, Any]) -> _Consumed:
    consumed = _Consumed()
    if action in ("Query", "Scan"):
        factor = 1.0 if request.get("ConsistentRead") else 0.5
        consumed.add(_table_name(backend, request.get("TableName", "")),
                     read=factor * _units(sum(evaluated), _READ_UNIT))
        return consumed
    unprocessed = set()
    if action == "BatchGetItem":
        for table, spec in (answer.get("UnprocessedKeys") or {}).items():
            unprocessed |= {(table, json.dumps(key, sort_keys=True)) for key in spec.get("Keys") or []}
    for touch in touches:
        table = _table_name(backend, touch.table)
        if touch.write:
            after = _stored_size(backend, touch.table, touch.key) or 0
            consumed.add(table, write=touch.factor * _units(max(touch.before or 0, after), _WRITE_UNIT))
        elif (touch.table, json.dumps(touch.key, sort_keys=True)) not in unprocessed:
            consumed.add(table, read=touch.factor * _units(touch.before or 0, _READ_UNIT))
    return consumed


# The metered actions: one ConsumedCapacity object for these, a list for the others.
_SINGLE = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"}
_METERED = _SINGLE | {"BatchGetItem", "BatchWriteItem", "TransactGetItems", "TransactWriteItems"}


def metered_dynamodb(app, environ, start_response, key: str, action: str | None, region: str):
    """Runs a DynamoDB request on moto (STATE_LOCK held) and meters it: capacity units and
    conflicts into USAGE, and ConsumedCapacity into the answer when the request asks."""
    request = _request_json(environ) if action in _METERED else None
    backend = touches = None
    if request is not None:
        try:
            backend = dynamodb_backends[_moto_account(environ, key)][region]
            touches = _touches(backend, action, request)
            for touch in touches:
                touch.before = _stored_size(backend, touch.table, touch.key)
        except Exception:  # noqa: BLE001 - metering must never break a request
            log.exception("usage: cannot meter %s", action)
            backend = touches = None

    captured: dict[str, Any] = {}
    chunks: list[bytes] = []

    def capture(status, headers, exc_info=None):
        captured.update(status=status, headers=headers, exc_info=exc_info)
        return chunks.append

    _EVALUATED.sizes = [] if touches is not None else None
    try:
        result = app(environ, capture)
        try:
            for chunk in result:
                chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        evaluated = _EVALUATED.sizes or []
    finally:
        _EVALUATED.sizes = None

    status_line, headers = captured["status"], list(captured["headers"])
    body = b"".join(chunks)
    try:
        status = int(status_line.split()[0])
        answer = json.loads(body) if body else {}
        answer = answer if isinstance(answer, dict) else {}
        error = answer if status >= 400 else {}
        failures, conflicts = _conflicts(error)
        consumed = None
        if touches is not None and _charged(status, error):
            consumed = _consumed(backend, action, request, touches, evaluated, answer)
        with CALLS_LOCK:
            usage = _usage(key)
            usage.conditional_check_failures += failures
            usage.transaction_conflicts += conflicts
            if consumed is not None:
                usage.read_units += consumed.read_units()
                usage.write_units += consumed.write_units()
        mode = str(request.get("ReturnConsumedCapacity", "NONE")) if request else "NONE"
        if status == 200 and touches is not None and (mode in ("TOTAL", "INDEXES") or "ConsumedCapacity" in answer):
            if mode in ("TOTAL", "INDEXES") and consumed is not None:
                index = request.get("IndexName") if action in ("Query", "Scan") else None
                index_key = (_index_kind(backend, request.get("TableName", ""), index), index) if index else None
                capacity = consumed.answer(mode, index_key)
                answer["ConsumedCapacity"] = capacity[0] if action in _SINGLE else capacity
            else:  # AWS answers ConsumedCapacity only when asked; moto always does for some
                answer.pop("ConsumedCapacity", None)
            body = json.dumps(answer).encode()
            headers = _with_body_headers(headers, body)
    except Exception:  # noqa: BLE001 - metering must never break a request
        log.exception("usage: cannot meter %s's answer", action)
    start_response(status_line, headers, captured.get("exc_info"))
    return [body]


def _with_body_headers(headers: list[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    """Content-Length and DynamoDB's x-amz-crc32 (checked by the SDKs) for a new body."""
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower == "content-length":
            value = str(len(body))
        elif lower == "x-amz-crc32":
            value = str(binascii.crc32(body) & 0xFFFFFFFF)
        out.append((name, value))
    return out


# ---------------------------------------------------------------------------
# 12. CloudWatch GetMetricData, answered by the emulator (module cloudwatch_metrics)
#
# moto answers GetMetricData for Sum/Average/... only (HTTP 500 on percentiles such as p99)
# and knows nothing of the ALB data plane. The request has been logged, counted and met its
# injected fault (locked_app) before it gets here, under STATE_LOCK.
# ---------------------------------------------------------------------------


def intercept_cloudwatch(app):
    """Answers CloudWatch GetMetricData itself; everything else goes to moto."""

    def wsgi(environ, start_response):
        match = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if match and match.group(2) == "monitoring" and _action(environ, "monitoring") == "GetMetricData":
            account = _moto_account(environ, match.group(1))
            region = _credential_region(environ)
            backend = cloudwatch_backends[account][region]
            return cloudwatch_metrics.get_metric_data_app(environ, start_response, _peek_body(environ), backend)
        return app(environ, start_response)

    return wsgi


# ---------------------------------------------------------------------------
# 13. Lambda Invoke served by loopback handlers (Lambda API reference "Invoke",
#     https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html; "Lambda quotas")
#
# moto cannot run a function's code here (it would need Docker), so `Invoke`
# (POST /2015-03-31/functions/{FunctionName}/invocations) is answered by the emulator, which
# forwards the payload to a loopback HTTP server that plays the function:
#
#   POST   /_greenlight/lambda-handlers  {"function_name": "checkout-hook",
#                                         "url": "http://127.0.0.1:PORT/any/path",
#                                         "timeout_s": 60}       register, or replace
#   GET    /_greenlight/lambda-handlers[?function_name=X]       what is registered
#   DELETE /_greenlight/lambda-handlers?function_name=X         remove one
#
# `function_name` is a name (the emulator's default account and region) or a function ARN
# (its account and region), without a qualifier: a handler serves every version and alias.
# `url` must be plain http on a loopback host (127.0.0.0/8, ::1, localhost). `timeout_s`
# (default 60, at most 900 as a function's own timeout) bounds the whole exchange.
#
# Invoke, as AWS answers it:
#   * FunctionName (URL-decoded): a name, a full ARN or a partial ARN
#     (ACCOUNT:function:NAME), each with an optional `:QUALIFIER`, or `?Qualifier=` (both,
#     differing: InvalidParameterValueException). Account and region default to the caller's.
#   * no handler for the function: 404 ResourceNotFoundException, "Function not found: ARN".
#   * payload over 6291456 bytes (Event: 1048576): 413 RequestEntityTooLargeException, the
#     code and message AWS sends (the model names the shape RequestTooLargeException); a
#     payload that is not JSON: 400 InvalidRequestContentException.
#   * RequestResponse (default): the payload bytes, as they came, are POSTed to the handler
#     (Content-Type: application/json, plus the Lambda Runtime API's
#     Lambda-Runtime-Aws-Request-Id, Lambda-Runtime-Invoked-Function-Arn and, when the caller
#     sent X-Amz-Client-Context, Lambda-Runtime-Client-Context headers). 2xx: 200, the
#     handler's body, X-Amz-Executed-Version (the qualifier, else $LATEST); a handler's own
#     X-Amz-Function-Error header is passed on (to play a function that reports an error).
#     Anything else is a function error, as AWS reports one: 200 with
#     X-Amz-Function-Error: Unhandled and {"errorMessage", "errorType"}: the handler's status
#     and the start of its body, the connection error, or the timeout (Sandbox.Timedout).
#     X-Amz-Log-Type: Tail adds X-Amz-Log-Result (base64 START/END/REPORT lines).
#   * Event: 202, empty body, the handler called from a thread of its own. DryRun: 204.
# The request is logged (lambda:InvokeFunction, IAM's name) and meets the key's injected
# faults like any other (locked_app), but it is served without STATE_LOCK: the handler may
# call the emulator back while it runs.
# ---------------------------------------------------------------------------

LAMBDA_HANDLERS_PATH = "/_greenlight/lambda-handlers"
LAMBDA_INVOKE_MARK = "greenlight.lambda_invoke"  # environ key: the FunctionName path part
LAMBDA_DEFAULT_TIMEOUT_S = 60.0
LAMBDA_MAX_TIMEOUT_S = 900.0
LAMBDA_SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024  # 6291456 bytes ("Lambda quotas": 6 MB)
LAMBDA_EVENT_PAYLOAD_LIMIT = 1024 * 1024  # asynchronous invocations (1 MB; 256 KB until 2025)
LAMBDA_RESPONSE_PAYLOAD_LIMIT = 6 * 1024 * 1024 + 100  # 6291556, as Lambda's error says

_INVOKE_PATH = re.compile(r"/2015-03-31/functions/([^/]+)/invocations/?")
# The model's NamespacedFunctionName pattern, with groups.
_FUNCTION_REF = re.compile(
    r"(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:)?"
    r"(?:(?P<region>(?:eusc-)?[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d):)?"
    r"(?:(?P<account>\d{12}):)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9_.-]+)"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9_-]+))?")
_FUNCTION_REF_PATTERN = (r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
                         r"(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?")
_QUALIFIER = re.compile(r"[a-zA-Z0-9$_-]{1,128}")
_INVOCATION_TYPES = ("Event", "RequestResponse", "DryRun")


@dataclass(frozen=True)
class FunctionRef:
    partition: str
    region: str
    account: str
    name: str
    qualifier: str | None

    @property
    def arn(self) -> str:
        """The unqualified function ARN (what a handler is registered under)."""
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{self.name}"

    @property
    def qualified_arn(self) -> str:
        return f"{self.arn}:{self.qualifier}" if self.qualifier else self.arn


def parse_function_ref(text: str, account: str, region: str) -> FunctionRef | None:
    """A name, full ARN or partial ARN (optionally `:QUALIFIER`); None if it is none of them.
    Account and region default to the given ones."""
    match = _FUNCTION_REF.fullmatch(text)
    if not match or len(text) > 256 or len(match["name"]) > 64:
        return None
    return FunctionRef(match["partition"] or "aws", match["region"] or region, match["account"] or account,
                       match["name"], match["qualifier"])


def _default_account() -> str:
    from moto.core import DEFAULT_ACCOUNT_ID

    return os.environ.get("MOTO_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID


def _default_region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@dataclass
class LambdaHandler:
    function: FunctionRef  # unqualified
    url: str
    timeout_s: float
    invocations: int = 0
    function_errors: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"function_name": self.function.name, "function_arn": self.function.arn, "url": self.url,
                "timeout_s": self.timeout_s, "invocations": self.invocations,
                "function_errors": self.function_errors}


# By unqualified function ARN; guarded by LAMBDA_LOCK (never held while calling a handler).
LAMBDA_HANDLERS: dict[str, LambdaHandler] = {}
LAMBDA_LOCK = threading.Lock()


def _loopback_url(url: Any) -> str:
    """`url` if it is http://<loopback host>[:port][/path]; ValueError otherwise."""
    if not isinstance(url, str) or not url:
        raise ValueError("url: a string is required, e.g. http://127.0.0.1:8000/hook")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"url: {url!r} is not an http:// URL (the handler is called over plain HTTP)")
    host = parts.hostname or ""
    try:
        parts.port  # noqa: B018  (raises ValueError on a bad port)
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not host or not loopback:
        raise ValueError(f"url: {url!r} is not on a loopback host (127.0.0.0/8, ::1 or localhost)")
    return url


def _registered_function(value: Any) -> FunctionRef:
    if not isinstance(value, str) or not value:
        raise ValueError("function_name: a function name or ARN is required")
    ref = parse_function_ref(value, _default_account(), _default_region())
    if ref is None:
        raise ValueError(f"function_name: {value!r} is not a function name or ARN "
                         "(letters, digits, '-' and '_', at most 64)")
    if ref.qualifier:
        raise ValueError(f"function_name: {value!r} has a qualifier; a handler serves every version "
                         "and alias of its function")
    return ref


def lambda_handlers_app(environ, start_response):
    """`POST` registers (or replaces) a handler, `GET` lists them, `DELETE ?function_name=`
    removes one (section 13)."""
    method = environ.get("REQUEST_METHOD", "GET")
    names = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("function_name")
    if method == "POST":
        try:
            doc = json.loads(_peek_body(environ) or b"null")
            if not isinstance(doc, dict):
                raise ValueError("expected a JSON object {\"function_name\": ..., \"url\": ...}")
            ref = _registered_function(doc.get("function_name"))
            url = _loopback_url(doc.get("url"))
            timeout_s = doc.get("timeout_s", LAMBDA_DEFAULT_TIMEOUT_S)
            if (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                    or not 0 < timeout_s <= LAMBDA_MAX_TIMEOUT_S):
                raise ValueError(f"timeout_s: a number of seconds in (0, {LAMBDA_MAX_TIMEOUT_S:g}] is required")
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return _json_response(start_response, "400 Bad Request", {"error": str(exc)})
        handler = LambdaHandler(ref, url, float(timeout_s))
        with LAMBDA_LOCK:
            LAMBDA_HANDLERS[ref.arn] = handler
            doc = handler.to_json()
        log.info("lambda: %s is served by %s (timeout %g s)", ref.arn, url, handler.timeout_s)
        return _json_response(start_response, "200 OK", doc)
    if method not in ("GET", "DELETE"):
        return _json_response(start_response, "405 Method Not Allowed", {"error": "GET, POST or DELETE"})
    if method == "DELETE" and not names:
        return _json_response(start_response, "400 Bad Request", {"error": "function_name: a query parameter "
                                                                           "naming the function is required"})
    if names:
        try:
            ref = _registered_function(names[0])
        except ValueError as exc:
            return _json_response(start_response, "400 Bad Request", {"error": str(exc)})
        with LAMBDA_LOCK:
            handler = LAMBDA_HANDLERS.pop(ref.arn, None) if method == "DELETE" else LAMBDA_HANDLERS.get(ref.arn)
            doc = handler.to_json() if handler else None
        if doc is None:
            return _json_response(start_response, "404 Not Found", {"error": f"no handler for {ref.arn}"})
        if method == "DELETE":
            log.info("lambda: %s has no handler any more", ref.arn)
        return _json_response(start_response, "200 OK", doc)
    with LAMBDA_LOCK:
        doc = {arn: handler.to_json() for arn, handler in sorted(LAMBDA_HANDLERS.items())}
    return _json_response(start_response, "200 OK", doc)


# --- Lambda's wire shapes ---------------------------------------------------------------------

# The error shapes whose message member is spelled `Message` (the others: `message`).
_LAMBDA_CAPITAL_MESSAGE = {"ResourceNotFoundException", "ServiceException"}


def _lambda_error(start_response, status: int, code: str, message: str, request_id: str):
    """A Lambda (REST-JSON) error: the code in x-amzn-ErrorType, `{"Type", "Message"|"message"}`."""
    if code == "ValidationException":  # the framework's, not Lambda's own shapes
        doc: dict[str, Any] = {"message": message}
    else:
        doc = {"Type": "User" if status < 500 else "Service",
               "Message" if code in _LAMBDA_CAPITAL_MESSAGE else "message": message}
    body = json.dumps(doc).encode()
    start_response(f"{status} {http.HTTPStatus(status).phrase}", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
        ("x-amzn-ErrorType", code), ("x-amzn-RequestId", request_id)])
    return [body]


def _validation_message(value: str, member: str, constraint: str) -> str:
    return f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"


def _read_body(environ: dict[str, Any]) -> bytes:
    if environ.get("CONTENT_LENGTH"):
        return _peek_body(environ)
    if environ.get("wsgi.input_terminated"):  # chunked: werkzeug ends the stream for us
        return environ["wsgi.input"].read()
    return b""


def _lambda_invocation(environ: dict[str, Any], service: str | None) -> str | None:
    """The FunctionName path part of an Invoke (signed for `lambda`, or unsigned), else None."""
    if environ.get("REQUEST_METHOD") != "POST" or service not in (None, "lambda"):
        return None
    match = _INVOKE_PATH.fullmatch(environ.get("PATH_INFO", ""))
    return match.group(1) if match else None


@dataclass
class HandlerAnswer:
    status: int | None = None  # None: no answer (error says why)
    body: bytes = b""
    function_error: str | None = None  # the handler's own X-Amz-Function-Error header
    error: str | None = None
    timed_out: bool = False


def call_handler(handler: LambdaHandler, payload: bytes, headers: dict[str, str]) -> HandlerAnswer:
    """POSTs the payload to the handler; the whole exchange within its timeout."""
    parts = urllib.parse.urlsplit(handler.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=handler.timeout_s)
    answer = HandlerAnswer()

    def exchange() -> None:
        try:
            conn.request("POST", path, body=payload, headers=headers)
            response = conn.getresponse()
            answer.body = response.read()
            answer.function_error = response.getheader("X-Amz-Function-Error")
            answer.status = response.status
        except socket.timeout:
            answer.timed_out = True
        except (OSError, http.client.HTTPException) as exc:
            answer.error = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=exchange, name="lambda-handler-call", daemon=True)
    worker.start()
    worker.join(handler.timeout_s)
    if worker.is_alive():  # a slow trickle: give up at the deadline, as Lambda does
        answer.timed_out = True
        try:
            if conn.sock is not None:
                conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    conn.close()
    return answer


def _function_error(handler: LambdaHandler, answer: HandlerAnswer) -> tuple[str, str] | None:
    """(errorType, errorMessage) when the handler's answer is a function error."""
    if answer.timed_out:
        return "Sandbox.Timedout", (f"Task timed out after {handler.timeout_s:.2f} seconds "
                                    f"(the handler at {handler.url} did not answer in time)")
    if answer.status is None:
        return "Greenlight.HandlerUnreachable", f"the handler at {handler.url} could not be reached: {answer.error}"
    if not 200 <= answer.status < 300:
        text = answer.body.decode("utf-8", "replace")[:200]
        return "Greenlight.HandlerError", f"the handler at {handler.url} answered HTTP {answer.status}: {text}"
    if len(answer.body) > LAMBDA_RESPONSE_PAYLOAD_LIMIT:
        return "Function.ResponseSizeTooLarge", ("Response payload size exceeded maximum allowed payload size "
                                                 f"({LAMBDA_RESPONSE_PAYLOAD_LIMIT} bytes).")
    return None


def _tail_log(request_id: str, version: str, millis: float, failure: tuple[str, str] | None) -> str:
    """X-Amz-Log-Result: the last 4 KB of the invocation's log, base64 (START/END/REPORT)."""
    lines = [f"START RequestId: {request_id} Version: {version}"]
    if failure:
        lines.append(f"{failure[0]}: {failure[1]}")
    lines += [f"END RequestId: {request_id}",
              f"REPORT RequestId: {request_id}\tDuration: {millis:.2f} ms\tBilled Duration: {math.ceil(millis)} ms\t"
              "Memory Size: 128 MB\tMax Memory Used: 128 MB\t", ""]
    return base64.b64encode("\n".join(lines).encode()[-4096:]).decode()


def _invoke(handler: LambdaHandler, ref: FunctionRef, payload: bytes, environ: dict[str, Any],
            request_id: str) -> tuple[HandlerAnswer, tuple[str, str] | None, float]:
    headers = {"Content-Type": "application/json", "Lambda-Runtime-Aws-Request-Id": request_id,
               "Lambda-Runtime-Invoked-Function-Arn": ref.qualified_arn}
    client_context = environ.get("HTTP_X_AMZ_CLIENT_CONTEXT")
    if client_context:
        try:
            headers["Lambda-Runtime-Client-Context"] = base64.b64decode(client_context, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            headers["Lambda-Runtime-Client-Context"] = client_context
    started = time.monotonic()
    answer = call_handler(handler, payload, headers)
    millis = (time.monotonic() - started) * 1000.0
    failure = _function_error(handler, answer)
    with LAMBDA_LOCK:
        handler.invocations += 1
        if failure or answer.function_error:
            handler.function_errors += 1
    outcome = f"{failure[0]}: {failure[1]}" if failure else f"HTTP {answer.status}"
    log.info("lambda: %s invoked (%s, %.0f ms): %s", ref.qualified_arn, request_id, millis, outcome)
    return answer, failure, millis


def lambda_invoke_app(environ, start_response, function_part: str):
    """Lambda Invoke, answered from the function's loopback handler (section 13)."""
    request_id = str(uuid.uuid4())
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    function_name = urllib.parse.unquote(function_part)
    invocation_type = environ.get("HTTP_X_AMZ_INVOCATION_TYPE") or "RequestResponse"
    if invocation_type not in _INVOCATION_TYPES:
        return _lambda_error(start_response, 400, "ValidationException", _validation_message(
            invocation_type, "invocationType",
            f"Member must satisfy enum value set: [{', '.join(_INVOCATION_TYPES)}]"), request_id)
    log_type = environ.get("HTTP_X_AMZ_LOG_TYPE") or "None"
    if log_type not in ("None", "Tail"):
        return _lambda_error(start_response, 400, "ValidationException", _validation_message(
            log_type, "logType", "Member must satisfy enum value set: [Tail, None]"), request_id)
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if scope:
        with STATE_LOCK:  # moto's IAM backends are read to find the caller's account
            account = _moto_account(environ, scope.group(1))
    else:
        account = _default_account()
    ref = parse_function_ref(function_name, account, _credential_region(environ))
    if ref is None:
        return _lambda_error(start_response, 400, "ValidationException", _validation_message(
            function_name, "functionName",
            f"Member must satisfy regular expression pattern: {_FUNCTION_REF_PATTERN}"), request_id)
    qualifier = query.get("Qualifier", [""])[0]
    if qualifier and not _QUALIFIER.fullmatch(qualifier):
        return _lambda_error(start_response, 400, "ValidationException", _validation_message(
            qualifier, "qualifier", "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"),
            request_id)
    if qualifier and ref.qualifier and qualifier != ref.qualifier:
        return _lambda_error(start_response, 400, "InvalidParameterValueException",
                             "The derived qualifier from the function name does not match the specified "
                             "qualifier.", request_id)
    if qualifier and not ref.qualifier:
        ref = FunctionRef(ref.partition, ref.region, ref.account, ref.name, qualifier)

    payload = _read_body(environ)
    if invocation_type == "Event" and len(payload) > LAMBDA_EVENT_PAYLOAD_LIMIT:
        return _lambda_error(start_response, 413, "RequestEntityTooLargeException",
                             f"{len(payload)} byte payload is too large for the Event invocation type "
                             f"(limit {LAMBDA_EVENT_PAYLOAD_LIMIT} bytes)", request_id)
    if len(payload) > LAMBDA_SYNC_PAYLOAD_LIMIT:
        return _lambda_error(start_response, 413, "RequestEntityTooLargeException",
                             f"Request must be smaller than {LAMBDA_SYNC_PAYLOAD_LIMIT} bytes for the "
                             "InvokeFunction operation", request_id)
    with LAMBDA_LOCK:
        handler = LAMBDA_HANDLERS.get(ref.arn)
    if handler is None:
        log.info("lambda: %s invoked, no handler: ResourceNotFoundException", ref.qualified_arn)
        return _lambda_error(start_response, 404, "ResourceNotFoundException",
                             f"Function not found: {ref.qualified_arn}", request_id)
    if payload.strip():
        try:
            json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return _lambda_error(start_response, 400, "InvalidRequestContentException",
                                 f"Could not parse request body into json: Could not parse payload into json: {exc}",
                                 request_id)

    version = ref.qualifier or "$LATEST"
    if invocation_type == "DryRun":
        start_response("204 No Content", [("x-amzn-RequestId", request_id), ("Content-Length", "0")])
        return [b""]
    if invocation_type == "Event":
        threading.Thread(target=_invoke, args=(handler, ref, payload, environ, request_id),
                         name="lambda-event", daemon=True).start()
        start_response("202 Accepted", [("x-amzn-RequestId", request_id), ("Content-Length", "0")])
        return [b""]

    answer, failure, millis = _invoke(handler, ref, payload, environ, request_id)
    headers = [("Content-Type", "application/json"), ("X-Amz-Executed-Version", version),
               ("x-amzn-RequestId", request_id)]
    if failure:
        body = json.dumps({"errorMessage": failure[1], "errorType": failure[0]}).encode()
        headers.append(("X-Amz-Function-Error", "Unhandled"))
    else:
        body = answer.body
        if answer.function_error:
            headers.append(("X-Amz-Function-Error", answer.function_error))
    if log_type == "Tail":
        headers.append(("X-Amz-Log-Result", _tail_log(request_id, version, millis, failure)))
    headers.append(("Content-Length", str(len(body))))
    start_response("200 OK", headers)
    return [body]


def intercept_lambda(app):
    """Answers Lambda Invoke itself (marked by locked_app, which does not hold STATE_LOCK for
    it); everything else goes to moto."""

    def wsgi(environ, start_response):
        function_part = environ.get(LAMBDA_INVOKE_MARK)
        if function_part is not None:
            return lambda_invoke_app(environ, start_response, function_part)
        return app(environ, start_response)

    return wsgi


# --- IAM action names of REST-JSON requests (the call log, usage and faults) ----------------
#
# A REST-JSON request names its operation by method and path only. The routes come from
# botocore's model of the service (its `requestUri`s); the most specific match wins. IAM
# calls Invoke (and InvokeWithResponseStream) `lambda:InvokeFunction`.

_REST_JSON_SERVICES = {"lambda": "lambda"}  # SigV4 signing name -> botocore service name
_IAM_ACTION = {("lambda", "Invoke"): "InvokeFunction", ("lambda", "InvokeWithResponseStream"): "InvokeFunction"}
_REST_ROUTES: dict[str, list[tuple[str, re.Pattern[str], dict[str, list[str]], int, str]]] = {}
_REST_ROUTES_LOCK = threading.Lock()


def _rest_routes(service: str) -> list[tuple[str, re.Pattern[str], dict[str, list[str]], int, str]]:
    """(method, path regex, required query, literal length, IAM action) per operation."""
    with _REST_ROUTES_LOCK:
        routes = _REST_ROUTES.get(service)
        if routes is None:
            import botocore.session

            model = botocore.session.get_session().get_service_model(_REST_JSON_SERVICES[service])
            routes = []
            for name in model.operation_names:
                http_spec = model.operation_model(name).http
                path, _, query = http_spec["requestUri"].partition("?")
                regex, literal = "", 0
                for part in re.split(r"(\{[^}]+\})", path.rstrip("/")):
                    if part.startswith("{"):
                        regex += ".+" if part.endswith("+}") else "[^/]+"
                    else:
                        regex += re.escape(part)
                        literal += len(part)
                required = urllib.parse.parse_qs(query, keep_blank_values=True)
                routes.append((http_spec["method"], re.compile(regex + "/?"), required, literal,
                               _IAM_ACTION.get((service, name), name)))
            _REST_ROUTES[service] = routes
    return routes


def _rest_json_action(environ: dict[str, Any], service: str) -> str | None:
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    best: tuple[int, int, str] | None = None
    for route_method, regex, required, literal, action in _rest_routes(service):
        if route_method != method or not regex.fullmatch(path):
            continue
        if any(key not in query or (values != [""] and query[key] != values) for key, values in required.items()):
            continue
        candidate = (literal, len(required), action)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best else None



# ---------------------------------------------------------------------------
# Process lifecycle
# ---------------------------------------------------------------------------


def shutdown(code: int = 0) -> None:
    """Stop the stand-in apps (best effort) and end the process at once."""
    try:
        if STATE_LOCK.acquire(timeout=2):
            for instance_id in list(APPS):
                stop_app(instance_id)
    finally:
        logging.shutdown()
        os._exit(code)  # also ends the moto server and all worker threads


def watch_stdin() -> None:
    """Exit when stdin reaches EOF (the parent died or closed the pipe)."""
    try:
        while True:
            chunk = os.read(sys.stdin.fileno(), 4096)
            if not chunk:
                break
    except OSError:
        pass
    log.info("stdin closed, exiting")
    shutdown(0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="greenlight local AWS emulator (moto + extras)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 = pick a free port")
    p.add_argument("--pending-seconds", type=float, default=1.0,
                   help="how long new/started instances stay pending (default 1.0)")
    p.add_argument("--time-scale", type=float, default=0.1,
                   help="factor applied to health-check interval and timeout (default 0.1)")
    p.add_argument("--default-app-port", type=int, default=8080,
                   help="app port when the AMI has no greenlight:app-port tag (default 8080)")
    p.add_argument("--alb-seed", type=int, default=0,
                   help="seed of the ALB data plane's weighted target-group choice (default 0)")
    p.add_argument("--metric-period-s", type=int,
                   default=int(os.environ.get("GREENLIGHT_METRIC_PERIOD_S") or 60),
                   help="publication period of the ALB metrics in seconds (default 60 as on AWS, "
                        "or GREENLIGHT_METRIC_PERIOD_S)")
    p.add_argument("--app-seed", type=int, default=0,
                   help="seed of the stand-in apps' error and latency draws (default 0)")
    p.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    p.add_argument("--no-stdin-watch", action="store_true",
                   help="do not exit on stdin EOF (for running by hand)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    CFG.pending_seconds = args.pending_seconds
    CFG.time_scale = args.time_scale
    CFG.default_app_port = args.default_app_port
    CFG.app_seed = args.app_seed
    if args.metric_period_s < 1:
        raise SystemExit("--metric-period-s must be at least 1")
    cloudwatch_metrics.SETTINGS.period_s = args.metric_period_s

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: shutdown(0))

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        args.host, args.port, locked_app(intercept_lambda(intercept_cloudwatch(app))), threaded=True,
        request_handler=GreenlightRequestHandler,
    )
    threading.Thread(target=server.serve_forever, name="moto", daemon=True).start()
    Ticker().start()
    alb_data_plane.start(STATE_LOCK, seed=args.alb_seed)
    if not args.no_stdin_watch:
        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

    host = args.host if args.host not in ("0.0.0.0", "") else "127.0.0.1"
    sys.stdout.write(f"READY http://{host}:{server.server_port}\n")
    sys.stdout.flush()
    log.info("listening on http://%s:%s", host, server.server_port)

    # The main thread only waits, so that signal handlers run promptly.
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
