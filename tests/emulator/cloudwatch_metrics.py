"""
CloudWatch metrics for the emulator: the ALB data plane's AWS/ApplicationELB metrics and a
GetMetricData that answers every MetricStat query itself
=====================================================================================

Section 12 of README.md.

1. The data plane (alb_data_plane.py) records every request it answers with record():
   time, load balancer (`app/<name>/<id>`), target group (`targetgroup/<name>/<id>` or None),
   who answered (the target, or the load balancer itself), the status code, and the target's
   response time in seconds. The newest MAX_SAMPLES_PER_GROUP samples are kept per (load
   balancer, target group) pair (per load balancer for requests no group got): memory stays
   bounded, and only periods older than that are forgotten.
2. From those samples the emulator publishes, with the names and dimensions of the
   ELB docs ("CloudWatch metrics for your Application Load Balancer"), per (LoadBalancer,
   TargetGroup) and per LoadBalancer: RequestCount, HTTPCode_Target_{2,3,4,5}XX_Count,
   TargetResponseTime; per LoadBalancer only: HTTPCode_ELB_4XX_Count, HTTPCode_ELB_5XX_Count.
   Count metrics are one datum of value 1 per request, so Sum is the count and Minimum,
   Maximum and Average are 1, as AWS documents. A datapoint exists only for a period with
   matching requests. Data of a publication period (60 s as on AWS; `--metric-period-s`)
   becomes visible once that period has closed.
3. GetMetricData (query protocol: form POST, XML answer, as aws-sdk-cloudwatch 1.99 speaks
   it; and the JSON protocol current botocore speaks) is answered here for every MetricStat
   query: AWS/ApplicationELB from the samples, any other namespace from the datums moto
   stored through PutMetricData. Statistics: SampleCount, Sum, Average, Minimum, Maximum,
   pNN / pNN.N (nearest rank), TC(X:Y) with absolute bounds (lower exclusive, upper
   inclusive, as the docs define TM(150:1000); either bound may be omitted). Other statistics
   and metric math expressions answer a 400 InvalidParameterValue.

The module never imports greenlight_emulator (which runs as `__main__`); the emulator calls
get_metric_data_app() under its state lock, after its call log, usage counting and fault
injection have seen the request.
"""

from __future__ import annotations

import collections
import datetime
import enum
import json
import math
import re
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

ALB_NAMESPACE = "AWS/ApplicationELB"
XMLNS = "http://monitoring.amazonaws.com/doc/2010-08-01/"
MAX_SAMPLES_PER_GROUP = 100_000  # newest samples kept per (load balancer, target group)
MAX_QUERIES = 500  # GetMetricData's limit per call


class Source(enum.Enum):
    """Who answered a request."""

    TARGET = "target"  # the target's own answer (its status code and response time)
    ELB = "elb"  # the load balancer's own answer (fixed-response, redirect, 401, 413, 502-504)


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds
    source: Source
    status: int
    response_time: float | None  # seconds, target answers only


@dataclass
class Settings:
    period_s: int = 60  # publication period (AWS: one minute)
    clock: Callable[[], float] = time.time  # tests of this module may replace it


SETTINGS = Settings()
SAMPLES_LOCK = threading.Lock()
# (load balancer dimension, target group dimension or None) -> newest samples
SAMPLES: dict[tuple[str, str | None], collections.deque[Sample]] = {}


def load_balancer_dimension(arn: str) -> str:
    """`app/<name>/<id>` of a load balancer or listener ARN."""
    resource = arn.split(":", 5)[-1]  # loadbalancer/app/n/id or listener/app/n/id/lid
    parts = resource.split("/")
    return "/".join(parts[1:4])


def target_group_dimension(arn: str) -> str:
    """`targetgroup/<name>/<id>` of a target group ARN."""
    return arn.split(":", 5)[-1]


def record(listener_or_lb_arn: str, target_group_arn: str | None, source: Source, status: int,
           response_time: float | None = None, at: float | None = None) -> None:
    """One request the data plane answered."""
    key = (load_balancer_dimension(listener_or_lb_arn),
           target_group_dimension(target_group_arn) if target_group_arn else None)
    sample = Sample(SETTINGS.clock() if at is None else at, source, status, response_time)
    with SAMPLES_LOCK:
        samples = SAMPLES.get(key)
        if samples is None:
            samples = SAMPLES[key] = collections.deque(maxlen=MAX_SAMPLES_PER_GROUP)
        samples.append(sample)


def reset() -> None:
    with SAMPLES_LOCK:
        SAMPLES.clear()


# ---------------------------------------------------------------------------
# The AWS/ApplicationELB metrics
# ---------------------------------------------------------------------------


def _target_class(n: int) -> Callable[[Sample], float | None]:
    return lambda s: 1.0 if s.source is Source.TARGET and s.status // 100 == n else None


def _elb_class(n: int) -> Callable[[Sample], float | None]:
    return lambda s: 1.0 if s.source is Source.ELB and s.status // 100 == n else None


# metric name -> (the datum a sample contributes, or None; dimension sets it is published for)
LB = frozenset({"LoadBalancer"})
LB_TG = frozenset({"LoadBalancer", "TargetGroup"})
ALB_METRICS: dict[str, tuple[Callable[[Sample], float | None], tuple[frozenset[str], ...]]] = {
    "RequestCount": (lambda s: 1.0, (LB, LB_TG)),
    "HTTPCode_Target_2XX_Count": (_target_class(2), (LB, LB_TG)),
    "HTTPCode_Target_3XX_Count": (_target_class(3), (LB, LB_TG)),
    "HTTPCode_Target_4XX_Count": (_target_class(4), (LB, LB_TG)),
    "HTTPCode_Target_5XX_Count": (_target_class(5), (LB, LB_TG)),
    "TargetResponseTime": (
        lambda s: s.response_time if s.source is Source.TARGET else None, (LB, LB_TG)),
    "HTTPCode_ELB_4XX_Count": (_elb_class(4), (LB,)),
    "HTTPCode_ELB_5XX_Count": (_elb_class(5), (LB,)),
}


def alb_unit(metric_name: str) -> str:
    """The unit AWS publishes an AWS/ApplicationELB metric in."""
    return "Seconds" if metric_name == "TargetResponseTime" else "Count"


def _visible_before(now: float) -> float:
    """Samples before this time are published: their period has closed."""
    period = SETTINGS.period_s
    return math.floor(now / period) * period


def alb_points(metric_name: str, dimensions: dict[str, str]) -> list[tuple[float, float]]:
    """(time, value) of every published datum of one AWS/ApplicationELB metric."""
    spec = ALB_METRICS.get(metric_name)
    if spec is None or frozenset(dimensions) not in spec[1]:
        return []
    datum, _ = spec
    lb, tg = dimensions.get("LoadBalancer"), dimensions.get("TargetGroup")
    cutoff = _visible_before(SETTINGS.clock())
    with SAMPLES_LOCK:
        groups = [list(samples) for (k_lb, k_tg), samples in SAMPLES.items()
                  if k_lb == lb and (tg is None or k_tg == tg)]
    points = []
    for samples in groups:
        for s in samples:
            if s.at < cutoff:
                value = datum(s)
                if value is not None:
                    points.append((s.at, value))
    return points


# ---------------------------------------------------------------------------
# Statistics ("CloudWatch statistics definitions")
# ---------------------------------------------------------------------------


class StatKind(enum.Enum):
    SAMPLE_COUNT = "SampleCount"
    SUM = "Sum"
    AVERAGE = "Average"
    MINIMUM = "Minimum"
    MAXIMUM = "Maximum"
    PERCENTILE = "percentile"
    TRIMMED_COUNT = "trimmed-count"


@dataclass(frozen=True)
class Statistic:
    kind: StatKind
    percentile: float = 0.0  # PERCENTILE: 0..100
    low: float | None = None  # TRIMMED_COUNT: exclusive lower bound
    high: float | None = None  # TRIMMED_COUNT: inclusive upper bound


class MetricsError(Exception):
    """A 400 answer: (code, message)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


_PERCENTILE = re.compile(r"\Ap(\d{1,3}(?:\.\d{1,10})?)\Z")
_NUMBER = r"(-?\d+(?:\.\d+)?)?"
_TRIMMED_COUNT = re.compile(rf"\ATC\({_NUMBER}:{_NUMBER}\)\Z")


def parse_statistic(text: str) -> Statistic:
    for kind in (StatKind.SAMPLE_COUNT, StatKind.SUM, StatKind.AVERAGE, StatKind.MINIMUM, StatKind.MAXIMUM):
        if text == kind.value:
            return Statistic(kind)
    match = _PERCENTILE.match(text)
    if match and 0.0 <= float(match.group(1)) <= 100.0:
        return Statistic(StatKind.PERCENTILE, percentile=float(match.group(1)))
    match = _TRIMMED_COUNT.match(text)
    if match and (match.group(1) is not None or match.group(2) is not None):
        low = float(match.group(1)) if match.group(1) is not None else None
        high = float(match.group(2)) if match.group(2) is not None else None
        if low is None or high is None or low < high:
            return Statistic(StatKind.TRIMMED_COUNT, low=low, high=high)
    raise MetricsError(
        "InvalidParameterValue",
        f"The statistic {text!r} is not supported by the greenlight emulator (SampleCount, Sum, "
        "Average, Minimum, Maximum, pNN, pNN.N and TC(X:Y) with absolute bounds are).")


@dataclass
class Aggregate:
    """What the data of one period holds: raw values, plus pre-aggregated statistic sets
    (PutMetricData StatisticValues), which count for SampleCount/Sum/Minimum/Maximum only."""

    values: list[float]
    count: float = 0.0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add_value(self, value: float) -> None:
        self.values.append(value)
        self.add_set(1.0, value, value, value)

    def add_set(self, count: float, total: float, low: float, high: float) -> None:
        self.count += count
        self.total += total
        self.low = min(self.low, low)
        self.high = max(self.high, high)


def compute(stat: Statistic, agg: Aggregate) -> float | None:
    """The statistic of one period's data (None: no value for it)."""
    if agg.count <= 0:
        return None
    if stat.kind is StatKind.SAMPLE_COUNT:
        return agg.count
    if stat.kind is StatKind.SUM:
        return agg.total
    if stat.kind is StatKind.AVERAGE:
        return agg.total / agg.count
    if stat.kind is StatKind.MINIMUM:
        return agg.low
    if stat.kind is StatKind.MAXIMUM:
        return agg.high
    values = sorted(agg.values)
    if not values:
        return None  # only statistic sets: no percentiles
    if stat.kind is StatKind.PERCENTILE:
        # Nearest rank: the smallest value with at least p % of the values at or below it.
        rank = max(1, math.ceil(stat.percentile / 100.0 * len(values)))
        return values[min(rank, len(values)) - 1]
    return float(sum(1 for v in values
                     if (stat.low is None or v > stat.low) and (stat.high is None or v <= stat.high)))


# ---------------------------------------------------------------------------
# GetMetricData
# ---------------------------------------------------------------------------


@dataclass
class Query:
    id: str
    label: str | None
    return_data: bool
    namespace: str
    metric_name: str
    dimensions: dict[str, str]
    period: int
    stat_text: str
    stat: Statistic
    unit: str | None


def _nest(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query-protocol parameters (`A.member.1.B=x`) as nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        node: Any = root
        parts = key.split(".")
        i = 0
        while i < len(parts):
            part = parts[i]
            last = i == len(parts) - 1
            if i + 2 <= len(parts) - 1 and parts[i + 1] == "member":
                items = node.setdefault(part, {})
                index = int(parts[i + 2])
                if i + 2 == len(parts) - 1:
                    items[index] = value
                    break
                node = items.setdefault(index, {})
                i += 3
                continue
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
            i += 1

    def listify(node: Any) -> Any:
        if isinstance(node, dict):
            if node and all(isinstance(k, int) for k in node):
                return [listify(node[k]) for k in sorted(node)]
            return {k: listify(v) for k, v in node.items()}
        return node

    return listify(root)


def _time(value: Any, name: str) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MetricsError("InvalidParameterValue", f"The parameter {name} has an invalid value {value!r}.")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def _required(node: dict[str, Any], key: str, where: str) -> Any:
    if node.get(key) in (None, ""):
        raise MetricsError("MissingParameter", f"The parameter {where}.{key} is required.")
    return node[key]


def parse_queries(params: dict[str, Any]) -> list[Query]:
    raw = params.get("MetricDataQueries") or []
    if not raw:
        raise MetricsError("MissingParameter", "The parameter MetricDataQueries is required.")
    if len(raw) > MAX_QUERIES:
        raise MetricsError("InvalidParameterValue", f"At most {MAX_QUERIES} MetricDataQueries are allowed.")
    queries = []
    for n, q in enumerate(raw, 1):
        where = f"MetricDataQueries.member.{n}"
        if q.get("Expression"):
            raise MetricsError(
                "InvalidParameterValue",
                f"{where}: metric math and Metrics Insights expressions are not supported by the "
                "greenlight emulator; use MetricStat queries.")
        stat_node = q.get("MetricStat")
        if not stat_node:
            raise MetricsError("ValidationError", f"The parameter {where}.MetricStat is required.")
        metric = _required(stat_node, "Metric", f"{where}.MetricStat")
        period = int(_required(stat_node, "Period", f"{where}.MetricStat"))
        if period < 1:
            raise MetricsError("InvalidParameterValue", f"The parameter {where}.MetricStat.Period must be at least 1.")
        stat_text = str(_required(stat_node, "Stat", f"{where}.MetricStat"))
        return_data = str(q.get("ReturnData", True)).lower() != "false"
        dims = {str(d["Name"]): str(d.get("Value", "")) for d in metric.get("Dimensions") or []}
        queries.append(Query(
            id=str(_required(q, "Id", where)), label=q.get("Label"), return_data=return_data,
            namespace=str(_required(metric, "Namespace", f"{where}.MetricStat.Metric")),
            metric_name=str(_required(metric, "MetricName", f"{where}.MetricStat.Metric")),
            dimensions=dims, period=period, stat_text=stat_text, stat=parse_statistic(stat_text),
            unit=stat_node.get("Unit"),
        ))
        if queries[-1].namespace == ALB_NAMESPACE and period % SETTINGS.period_s:
            raise MetricsError(
                "InvalidParameterValue",
                f"The parameter {where}.MetricStat.Period must be a multiple of "
                f"{SETTINGS.period_s} for {ALB_NAMESPACE} metrics.")
    return queries


def _moto_points(backend: Any, query: Query) -> list[tuple[float, Any]]:
    """(time, datum) of the datums moto stored for the query's metric (exact dimensions)."""
    out = []
    for datum in list(getattr(backend, "metric_data", [])) if backend is not None else []:
        if datum.namespace != query.namespace or datum.name != query.metric_name:
            continue
        if {d.name: d.value for d in datum.dimensions} != query.dimensions:
            continue
        if query.unit and datum.unit != query.unit:
            continue
        stamp = datum.timestamp
        if isinstance(stamp, datetime.datetime):
            at = (stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.timezone.utc)).timestamp()
        else:
            at = _time(stamp, "Timestamp")
        out.append((at, datum))
    return out


@dataclass
class Result:
    id: str
    label: str
    timestamps: list[int]
    values: list[float]


def answer(params: dict[str, Any], moto_backend: Any) -> list[Result]:
    """The results of a GetMetricData request (MetricsError: a 400)."""
    start = _time(_required(params, "StartTime", "GetMetricData"), "StartTime")
    end = _time(_required(params, "EndTime", "GetMetricData"), "EndTime")
    if end <= start:
        raise MetricsError("ValidationError", "The parameter EndTime must be greater than StartTime.")
    scan_by = params.get("ScanBy") or "TimestampDescending"
    if scan_by not in ("TimestampDescending", "TimestampAscending"):
        raise MetricsError("InvalidParameterValue", f"The parameter ScanBy has an invalid value {scan_by!r}.")
    queries = parse_queries(params)
    # AWS rounds a recent StartTime down to a whole minute: here to a whole publication period.
    start = math.floor(start / SETTINGS.period_s) * SETTINGS.period_s
    results = []
    for q in queries:
        buckets: dict[int, Aggregate] = {}
        if q.namespace == ALB_NAMESPACE:
            wrong_unit = q.unit is not None and q.unit != alb_unit(q.metric_name)
            for at, value in [] if wrong_unit else alb_points(q.metric_name, q.dimensions):
                if start <= at < end:
                    bucket = int(start + (at - start) // q.period * q.period)
                    buckets.setdefault(bucket, Aggregate([])).add_value(value)
        else:
            for at, datum in _moto_points(moto_backend, q):
                if not start <= at < end:
                    continue
                agg = buckets.setdefault(int(start + (at - start) // q.period * q.period), Aggregate([]))
                if hasattr(datum, "value"):
                    agg.add_value(float(datum.value))
                else:  # MetricAggregatedDatum (StatisticValues)
                    agg.add_set(float(datum.sample_count), float(datum.sum), float(datum.min), float(datum.max))
        points = []
        for stamp in sorted(buckets, reverse=scan_by == "TimestampDescending"):
            value = compute(q.stat, buckets[stamp])
            if value is not None:
                points.append((stamp, value))
        if q.return_data:
            results.append(Result(q.id, q.label if q.label is not None else q.metric_name,
                                  [p[0] for p in points], [p[1] for p in points]))
    return results


def _iso(stamp: int) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_xml(results: list[Result], request_id: str) -> bytes:
    """The query protocol's answer, in moto's (and AWS's) shape."""
    members = "".join(
        f"<member><Id>{_esc(r.id)}</Id><Label>{_esc(r.label)}</Label>"
        f"<Timestamps>{''.join(f'<member>{_iso(t)}</member>' for t in r.timestamps)}</Timestamps>"
        f"<Values>{''.join(f'<member>{v!r}</member>' for v in r.values)}</Values>"
        "<StatusCode>Complete</StatusCode><Messages/></member>"
        for r in results)
    return (f'<GetMetricDataResponse xmlns="{XMLNS}"><GetMetricDataResult>'
            f"<MetricDataResults>{members}</MetricDataResults><Messages/></GetMetricDataResult>"
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
            "</GetMetricDataResponse>").encode()


def render_json(results: list[Result]) -> bytes:
    return json.dumps({"MetricDataResults": [
        {"Id": r.id, "Label": r.label, "Timestamps": r.timestamps, "Values": r.values,
         "StatusCode": "Complete", "Messages": []} for r in results], "Messages": []}).encode()


def _error(start_response, is_json: bool, error: MetricsError, request_id: str):
    if is_json:
        body = json.dumps({"__type": error.code, "message": error.message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.0"),
                   ("x-amzn-query-error", f"{error.code};Sender")]
    else:
        body = (f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>Sender</Type><Code>{error.code}</Code>'
                f"<Message>{_esc(error.message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        headers = [("Content-Type", "text/xml")]
    headers += [("x-amzn-RequestId", request_id), ("Content-Length", str(len(body)))]
    start_response("400 Bad Request", headers)
    return [body]


def get_metric_data_app(environ: dict[str, Any], start_response, body: bytes, moto_backend: Any):
    """Answers a CloudWatch GetMetricData request (either protocol) with `body` already read."""
    request_id = str(uuid.uuid4())
    is_json = bool(environ.get("HTTP_X_AMZ_TARGET")) or "json" in (environ.get("CONTENT_TYPE") or "")
    try:
        if is_json:
            params = json.loads(body or b"{}")
        else:
            params = _nest(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        results = answer(params, moto_backend)
    except MetricsError as error:
        return _error(start_response, is_json, error, request_id)
    except (ValueError, KeyError, TypeError) as error:
        return _error(start_response, is_json, MetricsError("InvalidParameterValue", str(error)), request_id)
    if is_json:
        data, content_type = render_json(results), "application/x-amz-json-1.0"
    else:
        data, content_type = render_xml(results, request_id), "text/xml"
    start_response("200 OK", [("Content-Type", content_type), ("x-amzn-RequestId", request_id),
                              ("Content-Length", str(len(data)))])
    return [data]
