"""Self-test of the emulator's CloudWatch metrics (cloudwatch_metrics.py, README section 12)
and of the stand-in apps' traits (README section 3).

Run from the repository root:
    .venv/bin/python -m unittest discover -s tests/emulator -p 'test_*.py'

The statistics, period alignment and visibility are checked in-process against hand-computed
values with a fake clock; the rest through an emulator of its own started with
`--metric-period-s 1`: requests through the ALB data plane, then GetMetricData in the query
protocol (form POST, XML, as aws-sdk-cloudwatch 1.99 sends it) and in the JSON protocol (boto3).
"""

from __future__ import annotations

import datetime
import os
import sys
import time
import unittest
import urllib.parse
import xml.etree.ElementTree as ET

import cloudwatch_metrics as cm
import test_data_plane as tdp
import test_emulator as te

EMULATOR_PROC = None
EMULATOR_URL = ""
EMULATOR_LOG = ""
NS = {"cw": cm.XMLNS}


def setUpModule() -> None:
    global EMULATOR_PROC, EMULATOR_URL, EMULATOR_LOG
    EMULATOR_PROC, EMULATOR_URL, EMULATOR_LOG = te.start_emulator("--metric-period-s", "1")
    # The data plane helpers (admin endpoints, raw_call) read their module's URL.
    tdp.EMULATOR_URL = te.EMULATOR_URL = EMULATOR_URL


def tearDownModule() -> None:
    if EMULATOR_PROC is not None:
        te.stop_emulator(EMULATOR_PROC)
        if os.environ.get("KEEP_EMULATOR_LOG"):
            print(f"emulator log (metrics): {EMULATOR_LOG}", file=sys.stderr)
        else:
            os.unlink(EMULATOR_LOG)


# ---------------------------------------------------------------------------
# In-process: statistics, periods, visibility
# ---------------------------------------------------------------------------

LISTENER = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/shop/50dc6c495c0c9188/f2f7dc8efc522ab2"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shop-a/73e2d6bc24d8a067"
LB_DIM = "app/shop/50dc6c495c0c9188"
TG_DIM = "targetgroup/shop-a/73e2d6bc24d8a067"


def query(metric: str, stat: str, period: int = 60, tg: bool = True, **extra) -> dict:
    dims = [{"Name": "LoadBalancer", "Value": LB_DIM}]
    if tg:
        dims.append({"Name": "TargetGroup", "Value": TG_DIM})
    return {"Id": extra.pop("Id", "q"), **extra, "MetricStat": {
        "Metric": {"Namespace": cm.ALB_NAMESPACE, "MetricName": metric, "Dimensions": dims},
        "Period": period, "Stat": stat}}


class StatisticsTest(unittest.TestCase):
    def setUp(self) -> None:
        self.saved = (cm.SETTINGS.period_s, cm.SETTINGS.clock)
        cm.SETTINGS.period_s = 60
        self.now = 1_800_000_000.0  # a whole minute (divisible by 60)
        cm.SETTINGS.clock = lambda: self.now
        self.saved_samples = dict(cm.SAMPLES)
        cm.reset()

    def tearDown(self) -> None:
        cm.SETTINGS.period_s, cm.SETTINGS.clock = self.saved
        cm.reset()
        cm.SAMPLES.update(self.saved_samples)

    def ask(self, *queries: dict, start: float, end: float, **params) -> dict[str, cm.Result]:
        results = cm.answer({"StartTime": start, "EndTime": end, "MetricDataQueries": list(queries),
                             **params}, None)
        return {r.id: r for r in results}

    def test_counts_percentiles_and_trimmed_counts_against_hand_computed_values(self):
        t0 = self.now - 120  # the minute [t0, t0 + 60) has closed
        times = [0.010 * k for k in range(1, 101)]  # 0.01 .. 1.00 s
        for k, rt in enumerate(times):
            status = 500 if k % 10 == 0 else 200  # 10 of 100
            cm.record(LISTENER, TG, cm.Source.TARGET, status, rt, at=t0 + k * 0.5)
        cm.record(LISTENER, TG, cm.Source.ELB, 503, at=t0 + 1)
        cm.record(LISTENER, None, cm.Source.ELB, 413, at=t0 + 2)
        got = self.ask(
            query("RequestCount", "Sum", Id="requests"),
            query("RequestCount", "Sum", tg=False, Id="lb_requests"),
            query("RequestCount", "Average", Id="avg"),
            query("HTTPCode_Target_5XX_Count", "Sum", Id="t5xx"),
            query("HTTPCode_Target_2XX_Count", "SampleCount", Id="t2xx"),
            query("HTTPCode_ELB_5XX_Count", "Sum", tg=False, Id="elb5xx"),
            query("HTTPCode_ELB_4XX_Count", "Sum", tg=False, Id="elb4xx"),
            query("TargetResponseTime", "p99", Id="p99"),
            query("TargetResponseTime", "p50", Id="p50"),
            query("TargetResponseTime", "p99.5", Id="p995"),
            query("TargetResponseTime", "Maximum", Id="max"),
            query("TargetResponseTime", "Minimum", Id="min"),
            query("TargetResponseTime", "Average", Id="mean"),
            query("TargetResponseTime", "TC(0.25:0.5)", Id="tc"),
            query("TargetResponseTime", "TC(0.25:)", Id="tc_low"),
            query("TargetResponseTime", "TC(:0.1)", Id="tc_high"),
            start=t0, end=t0 + 60,
        )
        one = {k: r.values for k, r in got.items()}
        self.assertEqual(one["requests"], [101.0])  # the 503 for the group counts too
        self.assertEqual(one["lb_requests"], [102.0])
        self.assertEqual(one["avg"], [1.0])  # count metrics: Average, Minimum, Maximum are 1
        self.assertEqual(one["t5xx"], [10.0])
        self.assertEqual(one["t2xx"], [90.0])
        self.assertEqual((one["elb5xx"], one["elb4xx"]), ([1.0], [1.0]))
        # Nearest rank over 0.01 .. 1.00: p99 is the 99th value, p50 the 50th, p99.5 the 100th.
        self.assertAlmostEqual(one["p99"][0], 0.99)
        self.assertAlmostEqual(one["p50"][0], 0.50)
        self.assertAlmostEqual(one["p995"][0], 1.00)
        self.assertAlmostEqual(one["max"][0], 1.00)
        self.assertAlmostEqual(one["min"][0], 0.01)
        self.assertAlmostEqual(one["mean"][0], 0.505)
        # TC: lower bound exclusive, upper inclusive: 0.26 .. 0.50 -> 25 values.
        self.assertEqual(one["tc"], [25.0])
        self.assertEqual(one["tc_low"], [75.0])  # 0.26 .. 1.00
        self.assertEqual(one["tc_high"], [10.0])  # 0.01 .. 0.10
        self.assertEqual(got["requests"].timestamps, [int(t0)])
        self.assertEqual(got["requests"].label, "RequestCount")

    def test_periods_align_to_the_rounded_start_and_no_datapoint_without_requests(self):
        t0 = self.now - 600  # 10 minutes ago, a whole minute
        for minute in (0, 1, 3):  # nothing in minute 2
            for _ in range(minute + 1):
                cm.record(LISTENER, TG, cm.Source.TARGET, 200, 0.01, at=t0 + minute * 60 + 5)
        got = self.ask(query("RequestCount", "Sum", Id="a"),
                       query("HTTPCode_Target_5XX_Count", "Sum", Id="none"),
                       start=t0 + 30, end=t0 + 300, ScanBy="TimestampAscending")
        # StartTime t0+30 is rounded down to t0 (a whole period).
        self.assertEqual(got["a"].timestamps, [int(t0), int(t0) + 60, int(t0) + 180])
        self.assertEqual(got["a"].values, [1.0, 2.0, 4.0])
        self.assertEqual((got["none"].timestamps, got["none"].values), ([], []))
        descending = self.ask(query("RequestCount", "Sum", period=120, Id="a", Label="two minutes"),
                              start=t0, end=t0 + 300)["a"]
        self.assertEqual(descending.timestamps, [int(t0) + 120, int(t0)])
        self.assertEqual(descending.values, [4.0, 3.0])
        self.assertEqual(descending.label, "two minutes")
        by_unit_q = [query("RequestCount", "Sum", Id=i) for i in ("count", "seconds")]
        by_unit_q[0]["MetricStat"]["Unit"], by_unit_q[1]["MetricStat"]["Unit"] = "Count", "Seconds"
        by_unit = self.ask(*by_unit_q, start=t0, end=t0 + 300)
        self.assertEqual((sum(by_unit["count"].values), by_unit["seconds"].values), (7.0, []))
        hidden = self.ask(query("RequestCount", "Sum", Id="a", ReturnData=False), start=t0, end=t0 + 300)
        self.assertEqual(hidden, {})

    def test_a_period_is_visible_only_once_it_has_closed(self):
        cm.record(LISTENER, TG, cm.Source.TARGET, 200, 0.01, at=self.now + 10)
        self.now += 30  # the minute [now, now + 60) is still open
        got = self.ask(query("RequestCount", "Sum"), start=self.now - 600, end=self.now + 600)
        self.assertEqual(got["q"].values, [])
        self.now += 30  # closed
        got = self.ask(query("RequestCount", "Sum"), start=self.now - 600, end=self.now + 600)
        self.assertEqual(got["q"].values, [1.0])

    def test_bounded_samples_and_unsupported_requests(self):
        self.assertEqual(cm.SAMPLES, {})
        with self.assertRaises(cm.MetricsError) as err:
            self.ask({"Id": "e", "Expression": "SUM(METRICS())"}, start=0, end=60)
        self.assertEqual(err.exception.code, "InvalidParameterValue")
        for bad in ("TM(10%:90%)", "p101", "TC(5:1)", "wm99", "TC(:)"):
            with self.assertRaises(cm.MetricsError, msg=bad):
                cm.parse_statistic(bad)
        with self.assertRaises(cm.MetricsError):  # not a multiple of the publication period
            self.ask(query("RequestCount", "Sum", period=90), start=0, end=600)
        for k in range(cm.MAX_SAMPLES_PER_GROUP + 10):
            cm.record(LISTENER, TG, cm.Source.TARGET, 200, 0.0, at=float(k))
        self.assertEqual(len(cm.SAMPLES[(LB_DIM, TG_DIM)]), cm.MAX_SAMPLES_PER_GROUP)
        self.assertEqual(cm.SAMPLES[(LB_DIM, TG_DIM)][0].at, 10.0)  # the oldest went first

    def test_query_protocol_parameters_nest(self):
        params = cm._nest([
            ("Action", "GetMetricData"), ("MetricDataQueries.member.1.Id", "a"),
            ("MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.2.Name", "TargetGroup"),
            ("MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Name", "LoadBalancer"),
            ("MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Value", "x"),
            ("MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.2.Value", "y"),
            ("MetricDataQueries.member.2.Id", "b"),
        ])
        dims = params["MetricDataQueries"][0]["MetricStat"]["Metric"]["Dimensions"]
        self.assertEqual(dims, [{"Name": "LoadBalancer", "Value": "x"}, {"Name": "TargetGroup", "Value": "y"}])
        self.assertEqual(params["MetricDataQueries"][1], {"Id": "b"})


# ---------------------------------------------------------------------------
# Through the emulator (publication period 1 s)
# ---------------------------------------------------------------------------


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def form(start: float, end: float, queries: list[dict]) -> bytes:
    """A GetMetricData request as aws-sdk-cloudwatch 1.99 (query protocol) encodes it."""
    pairs = [("Action", "GetMetricData"), ("Version", "2010-08-01"),
             ("StartTime", iso(start)), ("EndTime", iso(end))]
    for n, q in enumerate(queries, 1):
        p = f"MetricDataQueries.member.{n}"
        pairs.append((f"{p}.Id", q["Id"]))
        if "Expression" in q:
            pairs.append((f"{p}.Expression", q["Expression"]))
            continue
        m = q["MetricStat"]
        pairs += [(f"{p}.MetricStat.Metric.Namespace", m["Metric"]["Namespace"]),
                  (f"{p}.MetricStat.Metric.MetricName", m["Metric"]["MetricName"]),
                  (f"{p}.MetricStat.Period", str(m["Period"])), (f"{p}.MetricStat.Stat", m["Stat"])]
        for k, d in enumerate(m["Metric"].get("Dimensions", []), 1):
            pairs += [(f"{p}.MetricStat.Metric.Dimensions.member.{k}.Name", d["Name"]),
                      (f"{p}.MetricStat.Metric.Dimensions.member.{k}.Value", d["Value"])]
    return urllib.parse.urlencode(pairs).encode()


def xml_results(body: bytes) -> dict[str, tuple[str, list[str], list[float], str]]:
    root = ET.fromstring(body)
    out = {}
    for member in root.findall("cw:GetMetricDataResult/cw:MetricDataResults/cw:member", NS):
        out[member.findtext("cw:Id", namespaces=NS)] = (
            member.findtext("cw:Label", namespaces=NS),
            [t.text for t in member.findall("cw:Timestamps/cw:member", NS)],
            [float(v.text) for v in member.findall("cw:Values/cw:member", NS)],
            member.findtext("cw:StatusCode", namespaces=NS),
        )
    return out


class WorldTestCase(tdp.DataPlaneTest):
    """The data plane test's fixtures (fleet, group, alb, ...) without its tests (a test
    name bound to None is not collected)."""


for _name in [n for n in vars(tdp.DataPlaneTest) if n.startswith("test_")]:
    setattr(WorldTestCase, _name, None)


class MetricsThroughTheEmulatorTest(WorldTestCase):
    @property
    def url(self) -> str:
        return EMULATOR_URL

    def test_alb_metrics_through_get_metric_data_in_the_query_protocol(self):
        ids = self.fleet("v1")
        tg = self.group(ids)
        empty = self.group([])
        listener, base = self.alb([{"Type": "forward", "TargetGroupArn": tg}])
        self.elb.create_rule(ListenerArn=listener, Priority=1, Actions=[{"Type": "forward", "TargetGroupArn": empty}],
                             Conditions=[{"Field": "path-pattern", "Values": ["/nothing"]}])
        self.wait_group(tg, ids)
        started = time.time()
        for _ in range(20):
            self.assertEqual(tdp.send(base, "/").status, 200)
        for _ in range(3):
            self.assertEqual(tdp.send(base, "/nothing").status, 503)
        lb_dim, tg_dim = cm.load_balancer_dimension(listener), cm.target_group_dimension(tg)
        self.assertRegex(lb_dim, r"^app/lb-[0-9a-f]+/[0-9a-f]+$")
        self.assertRegex(tg_dim, r"^targetgroup/tg-[0-9a-f]+/[0-9a-f]+$")

        def q(id_, metric, stat, group=True):
            dims = [{"Name": "LoadBalancer", "Value": lb_dim}]
            if group:
                dims.append({"Name": "TargetGroup", "Value": tg_dim})
            return {"Id": id_, "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": metric,
                                                         "Dimensions": dims}, "Period": 3600, "Stat": stat}}

        queries = [q("requests", "RequestCount", "Sum"), q("lb", "RequestCount", "Sum", False),
                   q("elb5xx", "HTTPCode_ELB_5XX_Count", "Sum", False),
                   q("t2xx", "HTTPCode_Target_2XX_Count", "Sum"), q("t5xx", "HTTPCode_Target_5XX_Count", "Sum"),
                   q("p99", "TargetResponseTime", "p99"), q("n", "TargetResponseTime", "SampleCount")]
        hour = int(started // 3600 * 3600)

        def results():
            status, headers, body = te.raw_call("test", "monitoring", form(hour, hour + 7200, queries))
            self.assertEqual((status, headers["content-type"]), (200, "text/xml"), body)
            return body

        # The requests may straddle a publication period on a loaded machine: wait until every
        # period holding them has closed (the balancer's total is all 23), then judge the split.
        body = te.wait_until(lambda: (b := results()) and sum(xml_results(b)["lb"][2]) >= 23 and b, timeout=10,
                             what="the periods holding all 23 requests published")
        got = xml_results(body)
        total = lambda k: sum(got[k][2])  # noqa: E731 (a run may straddle an hour)
        self.assertEqual((total("requests"), total("lb"), total("elb5xx")), (20.0, 23.0, 3.0))
        self.assertEqual((total("t2xx"), total("n")), (20.0, 20.0))
        self.assertEqual(got["t5xx"][1:3], ([], []))  # no 5xx from the target: no datapoint
        self.assertTrue(0 < max(got["p99"][2]) < 3, got["p99"])
        self.assertEqual(got["requests"][0], "RequestCount")
        self.assertEqual(got["requests"][3], "Complete")
        self.assertEqual(got["requests"][1][0], iso(hour))
        root = ET.fromstring(body)
        self.assertEqual(root.tag, f"{{{cm.XMLNS}}}GetMetricDataResponse")
        self.assertIsNotNone(root.find("cw:ResponseMetadata/cw:RequestId", NS))

    def test_custom_metrics_and_errors_in_the_json_protocol(self):
        cw = self.client("cloudwatch")
        ns = f"greenlight/test-{self.suffix}"
        now = time.time()
        cw.put_metric_data(Namespace=ns, MetricData=[
            {"MetricName": "Latency", "Value": float(v), "Dimensions": [{"Name": "Service", "Value": "shop"}]}
            for v in range(1, 101)])
        metric = {"Namespace": ns, "MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "shop"}]}
        answer = cw.get_metric_data(
            StartTime=now - 600, EndTime=now + 600, ScanBy="TimestampAscending",
            MetricDataQueries=[{"Id": s.lower().replace("(", "").replace(")", "").replace(":", "_").replace(".", "_"),
                                "MetricStat": {"Metric": metric, "Period": 3600, "Stat": s}}
                               for s in ("p90", "TC(10:20)", "TC(:5)", "Average", "SampleCount", "Sum")])
        values = {r["Id"]: sum(r["Values"]) for r in answer["MetricDataResults"]}
        self.assertEqual(values, {"p90": 90.0, "tc10_20": 10.0, "tc_5": 5.0, "average": 50.5,
                                  "samplecount": 100.0, "sum": 5050.0})
        with self.assertRaises(cw.exceptions.ClientError) as err:
            cw.get_metric_data(StartTime=now - 60, EndTime=now + 60,
                               MetricDataQueries=[{"Id": "e", "Expression": "SUM(METRICS())"}])
        self.assertEqual(err.exception.response["Error"]["Code"], "InvalidParameterValue")
        self.assertEqual(err.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)

    def test_expressions_answer_a_query_protocol_400_and_faults_apply(self):
        now = time.time()
        status, _, body = te.raw_call("test", "monitoring", form(now - 60, now, [{"Id": "e", "Expression": "1"}]))
        self.assertEqual(status, 400)
        root = ET.fromstring(body)
        self.assertEqual(root.findtext("cw:Error/cw:Code", namespaces=NS), "InvalidParameterValue")
        self.assertEqual(root.findtext("cw:Error/cw:Type", namespaces=NS), "Sender")
        key = f"AKIDMETRICS{self.suffix.upper()}"
        code, _ = te.faults_request("POST", doc={"access_key": key, "rate": 1.0, "kinds": ["throttle"],
                                                 "services": ["cloudwatch"]})
        self.assertEqual(code, 200)
        request = form(now - 60, now, [query("RequestCount", "Sum")])
        status, _, body = te.raw_call(key, "monitoring", request)
        self.assertEqual(status, 400)
        self.assertIn(b"<Code>Throttling</Code>", body)
        _, counts = te.faults_request("GET", f"?access_key={key}")
        self.assertEqual(counts["by_action"], {"cloudwatch:GetMetricData": {"throttle": 1}})
        te.faults_request("DELETE", f"?access_key={key}")
        status, _, _ = te.raw_call(key, "monitoring", request)
        self.assertEqual(status, 200)
        calls = tdp.admin("/_greenlight/calls")
        self.assertIn("cloudwatch:GetMetricData", calls[key])


class AppTraitsTest(WorldTestCase):
    @property
    def url(self) -> str:
        return EMULATOR_URL

    def image(self, behaviour=None, version="v1", port=None, traits: dict | None = None) -> str:
        image_id = super().image(behaviour, version, port)
        if traits:
            self.ec2.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in traits.items()])
        return image_id

    def test_error_rate_latency_and_after_requests_spare_health_and_smoke(self):
        image = self.image("healthy", "v9", traits={
            "greenlight:app-error-rate": "50%", "greenlight:app-latency": "p50=20ms,p99=40ms",
            "greenlight:app-after-requests": "10"})
        [instance] = self.launch(image, self.subnets[0])
        ip = self.wait_running([instance["InstanceId"]])[instance["InstanceId"]]["PrivateIpAddress"]
        base = f"http://{ip}:8080"

        def health_answers() -> bool:
            try:
                return tdp.send(base, "/health").status == 200
            except OSError:
                return False

        te.wait_until(health_answers, what="the app listening")  # not `/`: a user request

        def timed(path):
            started = time.monotonic()
            answer = tdp.send(base, path)
            return answer, time.monotonic() - started

        before = [timed("/") for _ in range(10)]
        self.assertEqual({a.status for a, _ in before}, {200})
        self.assertLess(sorted(t for _, t in before)[5], 0.015)  # no added latency yet
        for path in ("/health", "/smoke"):
            answers = [tdp.send(base, path) for _ in range(20)]
            self.assertEqual({a.status for a in answers}, {200}, path)
        after = [timed("/checkout") for _ in range(40)]
        failures = sum(1 for a, _ in after if a.status == 500)
        self.assertTrue(8 <= failures <= 32, failures)
        self.assertEqual({a.body for a, _ in after if a.status == 500}, {"internal error version=v9"})
        median = sorted(t for _, t in after)[20]
        self.assertTrue(0.012 < median < 0.2, median)


if __name__ == "__main__":
    unittest.main()
