"""Self-test of greenlight_emulator.py.

Run from the repository root:
    .venv/bin/python -m unittest discover -s tests/emulator -p 'test_*.py'

The emulator is started exactly as the Rust harness does it
(`<python> tests/emulator/greenlight_emulator.py --host 127.0.0.1 --port 0`,
stdin/stdout pipes, stderr to a log file) and every behaviour that the
emulator adds to moto -- plus the moto behaviour greenlight relies on -- is
checked through boto3.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "greenlight_emulator.py")
PENDING_SECONDS = 1.0  # the emulator's default, which the Rust side uses


def start_emulator(*extra: str) -> tuple[subprocess.Popen, str, str]:
    log = tempfile.NamedTemporaryFile(prefix="greenlight-emulator-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, EMULATOR, "--host", "127.0.0.1", "--port", "0", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    log.close()
    line = proc.stdout.readline().decode()
    m = re.fullmatch(r"READY (http://127\.0\.0\.1:(\d+))\n", line)
    if not m:
        proc.kill()
        raise AssertionError(f"bad READY line {line!r}; log: {open(log.name).read()[-3000:]}")
    return proc, m.group(1), log.name


def stop_emulator(proc: subprocess.Popen) -> None:
    if not proc.stdin.closed:
        proc.stdin.close()  # EOF on stdin: the emulator exits by itself
    if proc.poll() is None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.stdout.close()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def refused(ip: str, port: int) -> bool:
    try:
        http_get(f"http://{ip}:{port}/", timeout=1)
    except (ConnectionRefusedError, urllib.error.URLError) as err:
        reason = getattr(err, "reason", err)
        return isinstance(reason, ConnectionRefusedError)
    return False


# One emulator for all EmulatorTestCase classes, as the Rust tests share one.
EMULATOR_PROC: subprocess.Popen | None = None
EMULATOR_URL = ""
EMULATOR_LOG = ""


def setUpModule() -> None:
    global EMULATOR_PROC, EMULATOR_URL, EMULATOR_LOG
    EMULATOR_PROC, EMULATOR_URL, EMULATOR_LOG = start_emulator()


def tearDownModule() -> None:
    if EMULATOR_PROC is not None:
        stop_emulator(EMULATOR_PROC)
        if os.environ.get("KEEP_EMULATOR_LOG"):
            print(f"emulator log: {EMULATOR_LOG}", file=sys.stderr)
        else:
            os.unlink(EMULATOR_LOG)


class EmulatorTestCase(unittest.TestCase):
    @property
    def url(self) -> str:
        return EMULATOR_URL

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1}),
        )

    def setUp(self) -> None:
        self.ec2 = self.client("ec2")
        self.elb = self.client("elbv2")
        self.suffix = uuid.uuid4().hex[:8]

    # --- helpers --------------------------------------------------------------

    def image(self, behaviour: str | None = None, version: str = "v1", port: int | None = None) -> str:
        image_id = self.ec2.register_image(Name=f"img-{uuid.uuid4().hex[:10]}")["ImageId"]
        tags = [{"Key": "greenlight:version", "Value": version}]
        if behaviour:
            tags.append({"Key": "greenlight:app-behaviour", "Value": behaviour})
        if port:
            tags.append({"Key": "greenlight:app-port", "Value": str(port)})
        self.ec2.create_tags(Resources=[image_id], Tags=tags)
        return image_id

    def network(self) -> tuple[str, list[str]]:
        vpc = self.ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=f"us-east-1{az}")[
                "Subnet"
            ]["SubnetId"]
            for i, az in ((1, "a"), (2, "b"))
        ]
        return vpc, subnets

    def launch(self, image_id: str, subnet: str, count: int = 1, **kw) -> list[dict]:
        return self.ec2.run_instances(
            ImageId=image_id, MinCount=count, MaxCount=count, SubnetId=subnet, **kw
        )["Instances"]

    def describe(self, instance_ids: list[str]) -> dict[str, dict]:
        res = self.ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]
        return {i["InstanceId"]: i for r in res for i in r["Instances"]}

    def wait_running(self, instance_ids: list[str]) -> dict[str, dict]:
        return wait_until(
            lambda: (d := self.describe(instance_ids))
            and all(i["State"]["Name"] == "running" for i in d.values())
            and d,
            timeout=PENDING_SECONDS + 5,
            what="instances running",
        )

    def target_group(self, vpc: str, **kw) -> str:
        params = dict(
            Name=f"tg-{uuid.uuid4().hex[:12]}",
            Protocol="HTTP",
            Port=8080,
            VpcId=vpc,
            HealthCheckPath="/health",
            HealthCheckIntervalSeconds=5,
            HealthCheckTimeoutSeconds=2,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=2,
        )
        params.update(kw)
        return self.elb.create_target_group(**params)["TargetGroups"][0]["TargetGroupArn"]

    def load_balancer(self, subnets: list[str]) -> str:
        return self.elb.create_load_balancer(Name=f"lb-{uuid.uuid4().hex[:12]}", Subnets=subnets)[
            "LoadBalancers"
        ][0]["LoadBalancerArn"]

    def listener(self, lb: str, tg: str) -> str:
        return self.elb.create_listener(
            LoadBalancerArn=lb, Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
        )["Listeners"][0]["ListenerArn"]

    def health(self, tg: str, targets: list[dict] | None = None) -> dict[str, tuple]:
        kw = {"Targets": targets} if targets else {}
        out = self.elb.describe_target_health(TargetGroupArn=tg, **kw)["TargetHealthDescriptions"]
        return {
            d["Target"]["Id"]: (
                d["TargetHealth"]["State"],
                d["TargetHealth"].get("Reason"),
                d["TargetHealth"].get("Description"),
            )
            for d in out
        }

    def wait_state(self, tg: str, instance_id: str, state: str, timeout: float = 8.0) -> tuple:
        return wait_until(
            lambda: (h := self.health(tg).get(instance_id)) and h[0] == state and h,
            timeout=timeout,
            what=f"{instance_id} {state} in {tg}",
        )


# ---------------------------------------------------------------------------


class ProcessContractTest(unittest.TestCase):
    """READY line, exit on stdin EOF, exit on SIGTERM; apps die with it."""

    def _launch_app(self, url: str) -> str:
        ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        image_id = ec2.register_image(Name="contract")["ImageId"]
        ec2.create_tags(Resources=[image_id], Tags=[{"Key": "greenlight:app-behaviour", "Value": "healthy"}])
        iid = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        ip = wait_until(
            lambda: (i := ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0])
            and i["State"]["Name"] == "running" and i["PrivateIpAddress"],
            timeout=5, what="running",
        )
        self.assertEqual(http_get(f"http://{ip}:8080/")[0], 200)
        return ip

    def test_exit_on_stdin_eof(self):
        proc, url, log = start_emulator()
        try:
            ip = self._launch_app(url)
            proc.stdin.close()
            self.assertEqual(proc.wait(timeout=5), 0)
            self.assertTrue(refused(ip, 8080))
            self.assertTrue(refused("127.0.0.1", int(url.rsplit(":", 1)[1])))
        finally:
            stop_emulator(proc)
            os.unlink(log)

    def test_exit_on_sigterm(self):
        proc, url, log = start_emulator()
        try:
            ip = self._launch_app(url)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=5), 0)
            self.assertTrue(refused(ip, 8080))
        finally:
            stop_emulator(proc)
            os.unlink(log)


class Ec2Test(EmulatorTestCase):
    def test_client_token_idempotency(self):
        _, (subnet, _) = self.network()
        image_id = self.image()
        token = f"deploy-{self.suffix}"
        first = self.ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, SubnetId=subnet, ClientToken=token)
        ids = sorted(i["InstanceId"] for i in first["Instances"])
        count_before = len(self.ec2.describe_instances()["Reservations"])

        again = self.ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, SubnetId=subnet, ClientToken=token)
        self.assertEqual(again["ReservationId"], first["ReservationId"])
        self.assertEqual(sorted(i["InstanceId"] for i in again["Instances"]), ids)
        self.assertEqual(len(self.ec2.describe_instances()["Reservations"]), count_before)
        self.assertTrue(all(i["ClientToken"] == token for i in self.describe(ids).values()))

        # Still the original reservation after one of them terminated; only the state varies.
        self.ec2.terminate_instances(InstanceIds=[ids[0]])
        replay = self.ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, SubnetId=subnet, ClientToken=token)
        states = {i["InstanceId"]: i["State"]["Name"] for i in replay["Instances"]}
        self.assertEqual(sorted(states), ids)
        self.assertEqual(states[ids[0]], "terminated")
        self.assertEqual(len(self.ec2.describe_instances()["Reservations"]), count_before)

        # Same token, different parameters.
        with self.assertRaises(ClientError) as ctx:
            self.ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, SubnetId=subnet, ClientToken=token)
        self.assertEqual(ctx.exception.response["Error"]["Code"], "IdempotentParameterMismatch")
        self.assertEqual(ctx.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)

        # Another token launches new instances.
        other = self.launch(image_id, subnet, count=2, ClientToken=f"other-{self.suffix}")
        self.assertFalse(set(ids) & {i["InstanceId"] for i in other})

    def test_an_image_moves_to_a_chosen_id_with_its_tags_and_launches_there(self):
        image_id = self.image(behaviour="healthy", version="v9")
        new_id = "ami-" + uuid.uuid4().hex[:17]

        def move(doc):
            request = urllib.request.Request(f"{self.url}/_greenlight/image-id", data=json.dumps(doc).encode(),
                                             method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as e:
                return e.code

        self.assertEqual(move({"image_id": image_id, "new_id": "ami-nothex"}), 400)
        self.assertEqual(move({"image_id": "ami-0000000000000dead", "new_id": new_id}), 404)
        self.assertEqual(move({"image_id": image_id, "new_id": new_id}), 200)
        image = self.ec2.describe_images(ImageIds=[new_id])["Images"][0]
        self.assertEqual({t["Key"]: t["Value"] for t in image["Tags"]}["greenlight:version"], "v9")
        with self.assertRaises(ClientError):
            self.ec2.describe_images(ImageIds=[image_id])
        other = self.image()
        self.assertEqual(move({"image_id": other, "new_id": new_id}), 409)
        _, (subnet, _) = self.network()
        [instance] = self.launch(new_id, subnet, count=1)
        self.assertEqual(instance["ImageId"], new_id)

    def test_pending_then_running_then_terminated(self):
        _, (subnet, _) = self.network()
        started = time.monotonic()
        inst = self.launch(self.image(), subnet)[0]
        iid = inst["InstanceId"]
        self.assertEqual(inst["State"], {"Code": 0, "Name": "pending"})
        self.assertEqual(self.describe([iid])[iid]["State"]["Name"], "pending")
        pending_filter = [{"Name": "instance-state-name", "Values": ["pending"]}]
        found = self.ec2.describe_instances(InstanceIds=[iid], Filters=pending_filter)["Reservations"]
        self.assertEqual(len(found), 1)
        self.wait_running([iid])
        self.assertGreaterEqual(time.monotonic() - started, PENDING_SECONDS * 0.9)
        self.assertEqual(self.describe([iid])[iid]["State"], {"Code": 16, "Name": "running"})
        self.ec2.terminate_instances(InstanceIds=[iid])
        self.assertEqual(self.describe([iid])[iid]["State"]["Name"], "terminated")

    def test_loopback_addresses_and_stand_in_apps(self):
        _, (subnet, _) = self.network()
        images = {
            "healthy": self.image("healthy", version="1.2.3"),
            "unhealthy": self.image("unhealthy"),
            "smoke-fails": self.image("smoke-fails"),
            "none": self.image(None),
            "port": self.image("healthy", version="9", port=18081),
        }
        launched = {name: self.launch(img, subnet)[0] for name, img in images.items()}
        launched["pair"] = self.launch(images["healthy"], subnet, count=2)
        ids = [i["InstanceId"] for v in launched.values() for i in (v if isinstance(v, list) else [v])]
        running = self.wait_running(ids)

        ips = [running[i]["PrivateIpAddress"] for i in ids]
        self.assertEqual(len(set(ips)), len(ips), "addresses must be unique")
        for iid, ip in zip(ids, ips):
            self.assertTrue(ip.startswith("127.") and ip != "127.0.0.1", ip)
            self.assertEqual(running[iid]["NetworkInterfaces"][0]["PrivateIpAddress"], ip)
        # RunInstances already reports the address.
        self.assertEqual(launched["healthy"]["PrivateIpAddress"], running[launched["healthy"]["InstanceId"]]["PrivateIpAddress"])

        def ip(name):
            return running[launched[name]["InstanceId"]]["PrivateIpAddress"]

        self.assertEqual(http_get(f"http://{ip('healthy')}:8080/anything"), (200, "ok version=1.2.3"))
        self.assertEqual(http_get(f"http://{ip('unhealthy')}:8080/health"), (503, "unavailable"))
        self.assertEqual(http_get(f"http://{ip('smoke-fails')}:8080/health"), (200, "ok"))
        self.assertEqual(http_get(f"http://{ip('smoke-fails')}:8080/"), (500, "internal error"))
        self.assertTrue(refused(ip("none"), 8080))
        self.assertEqual(http_get(f"http://{ip('port')}:18081/"), (200, "ok version=9"))
        self.assertTrue(refused(ip("port"), 8080))
        for inst in launched["pair"]:
            self.assertEqual(http_get(f"http://{running[inst['InstanceId']]['PrivateIpAddress']}:8080/")[0], 200)

        # Stop -> no app; start -> pending, then running with the app again.
        hid = launched["healthy"]["InstanceId"]
        self.ec2.stop_instances(InstanceIds=[hid])
        self.assertTrue(refused(ip("healthy"), 8080))
        self.ec2.start_instances(InstanceIds=[hid])
        self.assertEqual(self.describe([hid])[hid]["State"]["Name"], "pending")
        self.wait_running([hid])
        self.assertEqual(http_get(f"http://{ip('healthy')}:8080/")[0], 200)

        # Terminate -> no app.
        self.ec2.terminate_instances(InstanceIds=ids)
        for address in ips:
            self.assertTrue(refused(address, 8080), address)

    def test_images_and_instance_filters(self):
        image_id = self.ec2.register_image(Name=f"only-a-name-{self.suffix}")["ImageId"]
        image = self.ec2.describe_images(ImageIds=[image_id])["Images"][0]
        self.assertEqual(image["OwnerId"], "123456789012")
        arn = f"arn:aws:imagebuilder:us-east-1:123456789012:image/greenlight/{self.suffix}"
        self.ec2.create_tags(Resources=[image_id], Tags=[{"Key": "Ec2ImageBuilderArn", "Value": arn}])
        found = self.ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:Ec2ImageBuilderArn", "Values": [arn]}])
        self.assertEqual([i["ImageId"] for i in found["Images"]], [image_id])

        _, (subnet, _) = self.network()
        deploy_id = f"d-{self.suffix}"
        tags = [{"ResourceType": "instance", "Tags": [{"Key": "greenlight:deploy-id", "Value": deploy_id}]}]
        mine = [i["InstanceId"] for i in self.launch(image_id, subnet, count=2, TagSpecifications=tags)]
        self.launch(image_id, subnet)  # untagged
        self.wait_running(mine)
        self.ec2.terminate_instances(InstanceIds=[mine[0]])

        def query(states):
            filters = [{"Name": "tag:greenlight:deploy-id", "Values": [deploy_id]},
                       {"Name": "instance-state-name", "Values": states}]
            res = self.ec2.describe_instances(Filters=filters)["Reservations"]
            return sorted(i["InstanceId"] for r in res for i in r["Instances"])

        self.assertEqual(query(["pending", "running"]), [mine[1]])
        self.assertEqual(query(["terminated"]), [mine[0]])
        self.assertEqual(query(["pending", "running", "terminated"]), sorted(mine))


class TargetHealthTest(EmulatorTestCase):
    def test_health_states_from_real_checks(self):
        vpc, subnets = self.network()
        kinds = ["healthy", "unhealthy", "smoke-fails", None]
        insts = {k: self.launch(self.image(k), subnets[0])[0]["InstanceId"] for k in kinds}
        ids = list(insts.values())
        tg = self.target_group(vpc)
        root_tg = self.target_group(vpc, HealthCheckPath="/", Matcher={"HttpCode": "200-299"})
        # Pending instances can be registered (as with Auto Scaling).
        self.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i} for i in ids])
        self.elb.register_targets(TargetGroupArn=root_tg, Targets=[{"Id": insts["smoke-fails"]}])

        # Not referenced by any listener: unused / Target.NotInUse, not checked.
        h = self.health(tg)
        self.assertEqual(set(h), set(ids))
        for state in h.values():
            self.assertEqual(state, ("unused", "Target.NotInUse",
                                     "Target group is not configured to receive traffic from the load balancer"))

        lb = self.load_balancer(subnets)
        self.listener(lb, tg)
        # Referenced only with weight 0 inside a weighted ForwardConfig still counts.
        rule_listener = self.elb.create_listener(
            LoadBalancerArn=lb, Protocol="HTTP", Port=81,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
        )["Listeners"][0]["ListenerArn"]
        self.elb.create_rule(
            ListenerArn=rule_listener, Priority=1,
            Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
            Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": tg, "Weight": 100}, {"TargetGroupArn": root_tg, "Weight": 0}]}}],
        )
        self.assertEqual(self.health(tg)[insts["healthy"]][:2], ("initial", "Elb.RegistrationInProgress"))

        self.wait_state(tg, insts["healthy"], "healthy")
        self.wait_state(tg, insts["smoke-fails"], "healthy")  # /health answers 200
        self.assertEqual(
            self.wait_state(tg, insts["unhealthy"], "unhealthy"),
            ("unhealthy", "Target.ResponseCodeMismatch", "Health checks failed with these codes: [503]"),
        )
        self.assertEqual(self.wait_state(tg, insts[None], "unhealthy")[1], "Target.FailedHealthChecks")
        self.assertEqual(
            self.wait_state(root_tg, insts["smoke-fails"], "unhealthy")[1:],
            ("Target.ResponseCodeMismatch", "Health checks failed with these codes: [500]"),
        )

        # Explicitly asking for a target that is not registered.
        other = self.launch(self.image("healthy"), subnets[0])[0]["InstanceId"]
        self.assertEqual(self.health(tg, [{"Id": other}])[other][:2], ("unused", "Target.NotRegistered"))

        # Terminated / stopped instances: unused / Target.InvalidState.
        self.ec2.terminate_instances(InstanceIds=[insts["unhealthy"]])
        self.ec2.stop_instances(InstanceIds=[insts[None]])
        h = self.health(tg)
        self.assertEqual(h[insts["unhealthy"]][:2], ("unused", "Target.InvalidState"))
        self.assertEqual(h[insts[None]][:2], ("unused", "Target.InvalidState"))

    def test_unused_then_referenced_starts_from_initial(self):
        vpc, subnets = self.network()
        iid = self.launch(self.image("healthy"), subnets[0])[0]["InstanceId"]
        self.wait_running([iid])
        tg = self.target_group(vpc, HealthyThresholdCount=3)
        self.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": iid}])
        lb = self.load_balancer(subnets)
        listener = self.listener(lb, tg)
        self.wait_state(tg, iid, "healthy")
        other_tg = self.target_group(vpc)
        self.elb.modify_listener(ListenerArn=listener, DefaultActions=[{"Type": "forward", "TargetGroupArn": other_tg}])
        self.assertEqual(self.health(tg)[iid][:2], ("unused", "Target.NotInUse"))
        time.sleep(0.2)
        self.elb.modify_listener(ListenerArn=listener, DefaultActions=[{"Type": "forward", "ForwardConfig": {
            "TargetGroups": [{"TargetGroupArn": other_tg, "Weight": 100}, {"TargetGroupArn": tg, "Weight": 0}]}}])
        self.assertEqual(self.health(tg)[iid][:2], ("initial", "Elb.RegistrationInProgress"))
        self.wait_state(tg, iid, "healthy")

    def test_deregistration_draining(self):
        vpc, subnets = self.network()
        a, b = (i["InstanceId"] for i in self.launch(self.image("healthy"), subnets[0], count=2))
        tg = self.target_group(vpc)
        self.elb.modify_target_group_attributes(
            TargetGroupArn=tg, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
        self.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": a}, {"Id": b}])
        self.listener(self.load_balancer(subnets), tg)
        self.wait_state(tg, a, "healthy")
        self.wait_state(tg, b, "healthy")

        self.elb.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": a}, {"Id": b}])
        started = time.monotonic()
        h = self.health(tg)
        self.assertEqual(set(h), {a, b})
        self.assertEqual(h[a], ("draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"))

        # Re-registering a draining target makes it registered again (initial).
        self.elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": b}])
        self.assertEqual(self.health(tg)[b][:2], ("initial", "Elb.RegistrationInProgress"))

        wait_until(lambda: a not in self.health(tg), timeout=4, what="draining finished")
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        self.assertEqual(self.health(tg, [{"Id": a}])[a][:2], ("unused", "Target.NotRegistered"))
        self.wait_state(tg, b, "healthy")


class OtherServicesTest(EmulatorTestCase):
    def test_eventbridge_rule_to_sqs(self):
        events, sqs = self.client("events"), self.client("sqs")
        bus = f"bus-{self.suffix}"
        events.create_event_bus(Name=bus)
        queue = sqs.create_queue(QueueName=f"q-{self.suffix}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        pattern = {
            "source": ["greenlight.test"],
            "detail": {"state": {"status": ["AVAILABLE"]}, "key": [{"prefix": "releases/"}]},
        }
        events.put_rule(Name="r", EventBusName=bus, EventPattern=json.dumps(pattern))
        events.put_targets(Rule="r", EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])

        def event(status, key):
            return {"Source": "greenlight.test", "DetailType": "Image State Change", "EventBusName": bus,
                    "Resources": ["arn:aws:imagebuilder:us-east-1:123456789012:image/x/1"],
                    "Detail": json.dumps({"state": {"status": status}, "key": key})}

        out = events.put_events(Entries=[event("AVAILABLE", "releases/1.0"), event("FAILED", "releases/1.1"),
                                         event("AVAILABLE", "other/1.2")])
        self.assertEqual(out["FailedEntryCount"], 0)
        messages = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            messages += got
            if not got and messages:
                break
        self.assertEqual(len(messages), 1, messages)
        body = json.loads(messages[0]["Body"])
        self.assertEqual(set(body), {"version", "id", "detail-type", "source", "account", "time",
                                     "region", "resources", "detail"})
        self.assertEqual(body["account"], "123456789012")
        self.assertEqual(body["region"], "us-east-1")
        self.assertEqual(body["detail-type"], "Image State Change")
        self.assertEqual(body["id"], out["Entries"][0]["EventId"])
        self.assertRegex(body["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(body["detail"], {"state": {"status": "AVAILABLE"}, "key": "releases/1.0"})

    def test_weighted_forward_config(self):
        vpc, subnets = self.network()
        blue, green = self.target_group(vpc), self.target_group(vpc)
        listener = self.listener(self.load_balancer(subnets), blue)

        def forward(wb, wg):
            return [{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": blue, "Weight": wb}, {"TargetGroupArn": green, "Weight": wg}]}}]

        def weights(actions):
            return {t["TargetGroupArn"]: t["Weight"] for t in actions[0]["ForwardConfig"]["TargetGroups"]}

        for wb, wg in ((90, 10), (100, 0), (0, 100)):
            self.elb.modify_listener(ListenerArn=listener, DefaultActions=forward(wb, wg))
            got = self.elb.describe_listeners(ListenerArns=[listener])["Listeners"][0]["DefaultActions"]
            self.assertEqual(weights(got), {blue: wb, green: wg})

        rule = self.elb.create_rule(ListenerArn=listener, Priority=5,
                                    Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
                                    Actions=[{"Type": "forward", "TargetGroupArn": blue}])["Rules"][0]["RuleArn"]
        self.elb.modify_rule(RuleArn=rule, Actions=forward(90, 10))
        got = self.elb.describe_rules(RuleArns=[rule])["Rules"][0]["Actions"]
        self.assertEqual(weights(got), {blue: 90, green: 10})

    # --- authenticate-oidc client secrets, stickiness, action order ------------------

    OIDC = {"Issuer": "https://idp.example.com", "AuthorizationEndpoint": "https://idp.example.com/auth",
            "TokenEndpoint": "https://idp.example.com/token", "UserInfoEndpoint": "https://idp.example.com/me",
            "ClientId": "web", "Scope": "openid", "SessionTimeout": 3600,
            "OnUnauthenticatedRequest": "authenticate"}

    def secrets(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/_greenlight/client-secrets", timeout=5) as response:
            return json.load(response)

    def oidc_actions(self, tgs: list[tuple[str, int]], secret: str | None = None, use_existing: bool = False):
        config = dict(self.OIDC)
        if secret is not None:
            config["ClientSecret"] = secret
        if use_existing:
            config["UseExistingClientSecret"] = True
        return [
            {"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": config},
            {"Type": "forward", "Order": 2, "ForwardConfig": {
                "TargetGroups": [{"TargetGroupArn": tg, "Weight": w} for tg, w in tgs],
                "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 600}}},
        ]

    def test_oidc_client_secret_is_kept_and_never_reported(self):
        """AWS: ClientSecret is required on create, may be omitted on modify with
        UseExistingClientSecret=true (the action keeps its secret); no answer reports it, and
        the flag is not stored. moto echoed the secret and lost it on such a modify."""
        vpc, subnets = self.network()
        blue, green = self.target_group(vpc), self.target_group(vpc)
        lb = self.load_balancer(subnets)
        key = f"AKIDOIDC{self.suffix.upper()}"
        elb = boto3.client("elbv2", endpoint_url=self.url, region_name="us-east-1",
                           aws_access_key_id=key, aws_secret_access_key="test",
                           config=Config(retries={"max_attempts": 1}))
        created = elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                                      DefaultActions=self.oidc_actions([(blue, 100)], secret="s3cr3t"))
        listener = created["Listeners"][0]["ListenerArn"]
        rule = elb.create_rule(ListenerArn=listener, Priority=3,
                               Conditions=[{"Field": "path-pattern", "Values": ["/app/*"]}],
                               Actions=self.oidc_actions([(blue, 100)], secret="rule-secret"))["Rules"][0]["RuleArn"]
        self.assertEqual(self.secrets()["sent"][key],
                         {"elasticloadbalancing:CreateListener": 1, "elasticloadbalancing:CreateRule": 1})

        answers = [created["Listeners"][0]["DefaultActions"]]
        answers.append(elb.modify_listener(
            ListenerArn=listener,
            DefaultActions=self.oidc_actions([(blue, 90), (green, 10)], use_existing=True))["Listeners"][0]["DefaultActions"])
        answers.append(elb.modify_rule(
            RuleArn=rule, Actions=self.oidc_actions([(blue, 90), (green, 10)], use_existing=True))["Rules"][0]["Actions"])
        described = elb.describe_listeners(ListenerArns=[listener])["Listeners"][0]["DefaultActions"]
        answers.append(described)
        answers.append(elb.describe_rules(RuleArns=[rule])["Rules"][0]["Actions"])
        answers.append(elb.describe_listeners(LoadBalancerArn=lb)["Listeners"][0]["DefaultActions"])
        for actions in answers:
            config = actions[0]["AuthenticateOidcConfig"]
            self.assertNotIn("ClientSecret", config)
            self.assertNotIn("UseExistingClientSecret", config)
            self.assertEqual(config, self.OIDC)
        # Order and stickiness round-trip.
        self.assertEqual([(a["Type"], a["Order"]) for a in described], [("authenticate-oidc", 1), ("forward", 2)])
        self.assertEqual(described[1]["ForwardConfig"]["TargetGroupStickinessConfig"],
                         {"Enabled": True, "DurationSeconds": 600})
        # The secrets stayed, and the modifies sent none.
        stored = self.secrets()
        self.assertEqual(stored["stored"][listener], ["s3cr3t"])
        self.assertEqual(stored["stored"][rule], ["rule-secret"])
        self.assertEqual(set(stored["sent"][key]),
                         {"elasticloadbalancing:CreateListener", "elasticloadbalancing:CreateRule"})
        # A new secret replaces it.
        elb.modify_listener(ListenerArn=listener, DefaultActions=self.oidc_actions([(blue, 100)], secret="rotated"))
        self.assertEqual(self.secrets()["stored"][listener], ["rotated"])

    def test_oidc_without_a_secret_is_refused(self):
        vpc, subnets = self.network()
        blue = self.target_group(vpc)
        lb = self.load_balancer(subnets)
        with self.assertRaises(ClientError) as ctx:
            self.elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                                     DefaultActions=self.oidc_actions([(blue, 100)]))
        self.assertEqual(ctx.exception.response["Error"]["Code"], "ValidationError")
        listener = self.listener(lb, blue)
        for use_existing in (False, True):  # no existing secret to use either
            with self.assertRaises(ClientError) as ctx:
                self.elb.modify_listener(ListenerArn=listener,
                                         DefaultActions=self.oidc_actions([(blue, 100)], use_existing=use_existing))
            self.assertEqual(ctx.exception.response["Error"]["Code"], "ValidationError")
        got = self.elb.describe_listeners(ListenerArns=[listener])["Listeners"][0]["DefaultActions"]
        self.assertEqual([a["Type"] for a in got], ["forward"], "refused: unchanged")

    def test_target_groups_load_balancers_are_who_forwards_to_them(self):
        """AWS: LoadBalancerArns names each load balancer that routes to the group, once,
        whether a listener was created or modified to forward to it. moto listed one entry per
        CreateListener/CreateRule and none for ModifyListener/ModifyRule."""
        vpc, subnets = self.network()
        blue, green = self.target_group(vpc), self.target_group(vpc)
        lb = self.load_balancer(subnets)

        def lbs(tg):
            return self.elb.describe_target_groups(TargetGroupArns=[tg])["TargetGroups"][0].get("LoadBalancerArns", [])

        listener = self.listener(lb, blue)
        self.elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=81,
                                 DefaultActions=[{"Type": "forward", "TargetGroupArn": blue}])
        self.assertEqual((lbs(blue), lbs(green)), ([lb], []))
        self.elb.modify_listener(ListenerArn=listener, DefaultActions=[{"Type": "forward", "ForwardConfig": {
            "TargetGroups": [{"TargetGroupArn": blue, "Weight": 0}, {"TargetGroupArn": green, "Weight": 100}]}}])
        self.assertEqual((lbs(blue), lbs(green)), ([lb], [lb]))
        self.assertEqual([g["TargetGroupArn"] for g in self.elb.describe_target_groups(LoadBalancerArn=lb)["TargetGroups"]],
                         sorted([blue, green], key=lambda arn: arn.split("/")[1]))

    def test_dynamodb_transaction_cancelled(self):
        ddb = self.client("dynamodb")
        table = f"t-{self.suffix}"
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        ddb.put_item(TableName=table, Item={"pk": {"S": "lock"}})
        with self.assertRaises(ClientError) as ctx:
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "new"}}}},
                {"Put": {"TableName": table, "Item": {"pk": {"S": "lock"}},
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        err = ctx.exception.response
        self.assertEqual(err["Error"]["Code"], "TransactionCanceledException")
        self.assertEqual([r["Code"] for r in err["CancellationReasons"]], ["None", "ConditionalCheckFailed"])
        self.assertNotIn("Item", ddb.get_item(TableName=table, Key={"pk": {"S": "new"}}))

    def test_dynamodb_stream_holds_each_committed_change_once_with_both_images(self):
        ddb, streams = self.client("dynamodb"), self.client("dynamodbstreams")
        table = f"s-{self.suffix}"
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        arn = streams.list_streams(TableName=table)["Streams"][0]["StreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        key = {"pk": {"S": "d"}}
        # A reader from the start (LATEST, before any write) must see everything below,
        # a cancelled transaction in between notwithstanding.
        reader = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                            ShardIteratorType="LATEST")["ShardIterator"]
        ddb.put_item(TableName=table, Item={**key, "phase": {"S": "launching"}})
        # A write that changes nothing: no record (as AWS documents).
        ddb.put_item(TableName=table, Item={**key, "phase": {"S": "launching"}})
        ddb.transact_write_items(TransactItems=[{"Update": {
            "TableName": table, "Key": key, "UpdateExpression": "SET phase = :p",
            "ExpressionAttributeValues": {":p": {"S": "verifying"}}}}])
        # A cancelled transaction writes nothing, so no record either.
        with self.assertRaises(ClientError):
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "other"}}}},
                {"Update": {"TableName": table, "Key": key, "UpdateExpression": "SET phase = :p",
                            "ConditionExpression": "phase = :q",
                            "ExpressionAttributeValues": {":p": {"S": "x"}, ":q": {"S": "launching"}}}},
            ])
        ddb.delete_item(TableName=table, Key=key)
        horizon = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for iterator in (horizon, reader):
            page = streams.get_records(ShardIterator=iterator)
            got = [(r["eventName"], r["dynamodb"].get("OldImage", {}).get("phase", {}).get("S"),
                    r["dynamodb"].get("NewImage", {}).get("phase", {}).get("S")) for r in page["Records"]]
            self.assertEqual(got, [("INSERT", None, "launching"), ("MODIFY", "launching", "verifying"),
                                   ("REMOVE", "verifying", None)])
            sequence = [int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"]]
            self.assertEqual(sequence, sorted(set(sequence)))
        # LATEST: only what is written afterwards.
        latest = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                            ShardIteratorType="LATEST")["ShardIterator"]
        ddb.put_item(TableName=table, Item={**key, "phase": {"S": "again"}})
        later = streams.get_records(ShardIterator=latest)["Records"]
        self.assertEqual([r["eventName"] for r in later], ["INSERT"])

    def test_s3_round_trip(self):
        s3 = self.client("s3")
        bucket = f"b-{self.suffix}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="releases/x.json", Body=b"{}")
        self.assertEqual(s3.get_object(Bucket=bucket, Key="releases/x.json")["Body"].read(), b"{}")

    def test_sqs_long_poll_does_not_block_other_requests(self):
        sqs = self.client("sqs")
        queue = sqs.create_queue(QueueName=f"poll-{self.suffix}")["QueueUrl"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            poll = pool.submit(sqs.receive_message, QueueUrl=queue, WaitTimeSeconds=2)
            time.sleep(0.2)
            self.ec2.describe_instances()
            self.client("sqs").send_message(QueueUrl=queue, MessageBody="wake up")
            self.assertLess(time.monotonic() - started, 1.0)
            self.assertEqual(poll.result(timeout=5)["Messages"][0]["Body"], "wake up")

    def test_calls_are_recorded_per_access_key(self):
        """Each signed call is logged under its access key id as IAM's `service:Action`
        (JSON, query and REST protocols), so roles can be checked against real use."""
        key = f"AKIDCALLS{self.suffix.upper()}"

        def client(service: str):
            return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                                aws_access_key_id=key, aws_secret_access_key="test")

        client("ec2").describe_instances()
        client("elbv2").describe_target_groups()
        client("cloudwatch").describe_alarms()
        s3 = client("s3")
        s3.create_bucket(Bucket=f"calls-{self.suffix}")
        s3.put_object(Bucket=f"calls-{self.suffix}", Key="reports/a.json", Body=b"{}")
        ddb = client("dynamodb")
        ddb.list_tables()
        with urllib.request.urlopen(f"{self.url}/_greenlight/calls", timeout=5) as response:
            calls = json.load(response)
        self.assertEqual(
            calls[key],
            ["cloudwatch:DescribeAlarms", "dynamodb:ListTables", "ec2:DescribeInstances",
             "elasticloadbalancing:DescribeTargetGroups", "s3:CreateBucket", "s3:PutObject"],
        )

    def test_parallel_clients(self):
        """~8 independent deployments at once (as the Rust tests run)."""

        def one_deployment(n: int) -> str:
            ec2, elb = self.client("ec2"), self.client("elbv2")
            image_id = ec2.register_image(Name=f"par-{self.suffix}-{n}")["ImageId"]
            ec2.create_tags(Resources=[image_id], Tags=[{"Key": "greenlight:app-behaviour", "Value": "healthy"}])
            vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
            subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24",
                                         AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
                       for i, az in ((1, "a"), (2, "b"))]
            ids = [i["InstanceId"] for i in ec2.run_instances(
                ImageId=image_id, MinCount=2, MaxCount=2, SubnetId=subnets[0])["Instances"]]
            tg = elb.create_target_group(Name=f"p{n}-{self.suffix}", Protocol="HTTP", Port=8080, VpcId=vpc,
                                         HealthCheckIntervalSeconds=5, HealthyThresholdCount=2)[
                "TargetGroups"][0]["TargetGroupArn"]
            lb = elb.create_load_balancer(Name=f"p{n}-{self.suffix}", Subnets=subnets)["LoadBalancers"][0][
                "LoadBalancerArn"]
            elb.create_listener(LoadBalancerArn=lb, Protocol="HTTP", Port=80,
                                DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
            elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i} for i in ids])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
                states = {d["TargetHealth"]["State"] for d in
                          elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]}
                if states == {"healthy"}:
                    ec2.terminate_instances(InstanceIds=ids)
                    return "ok"
                time.sleep(0.05)
            return f"timeout {states}"

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            self.assertEqual(list(pool.map(one_deployment, range(8))), ["ok"] * 8)


# --- fault injection -------------------------------------------------------------------------


def faults_request(method: str, query: str = "", doc=None) -> tuple[int, dict]:
    data = json.dumps(doc).encode() if doc is not None else None
    request = urllib.request.Request(f"{EMULATOR_URL}/_greenlight/faults{query}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def raw_call(key: str, service: str, body: bytes, target: str | None = None,
             content_type: str = "application/x-www-form-urlencoded", path: str = "/",
             extra_headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """One POST with a SigV4-shaped Authorization header for `key` (moto does not check
    signatures): (status, headers, body), or raises ConnectionResetError."""
    import http.client as client

    host, port = EMULATOR_URL.removeprefix("http://").split(":")
    headers = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/{service}/aws4_request, "
                         "SignedHeaders=host, Signature=0",
        "Content-Type": content_type,
    }
    if target:
        headers["X-Amz-Target"] = target
    headers.update(extra_headers or {})
    conn = client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


class FaultInjectionTest(EmulatorTestCase):
    """`/_greenlight/faults`: seeded faults for one access key id, in each protocol's shape."""

    def setUp(self) -> None:
        super().setUp()
        self.key = f"AKIDFAULT{self.suffix.upper()}"

    def tearDown(self) -> None:
        faults_request("DELETE", f"?access_key={self.key}")

    def plan(self, **plan) -> dict:
        status, doc = faults_request("POST", "", {"access_key": self.key, "seed": 7, **plan})
        self.assertEqual(status, 200, doc)
        return doc

    def counts(self) -> dict:
        status, doc = faults_request("GET", f"?access_key={self.key}")
        self.assertEqual(status, 200, doc)
        return doc

    def faulty(self, service: str):
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.key, aws_secret_access_key="test",
                            config=Config(retries={"total_max_attempts": 1}))

    def test_throttling_in_each_protocols_wire_shape(self):
        """EC2 query (503 RequestLimitExceeded), awsQuery (400 Throttling, Sender), DynamoDB
        JSON 1.0 (400 ThrottlingException with its namespace), S3 (503 SlowDown), and the
        other JSON services; parsed as such by a real SDK."""
        self.plan(rate=1.0, kinds=["throttle"])
        status, _, body = raw_call(self.key, "ec2", b"Action=DescribeInstances&Version=2016-11-15")
        self.assertEqual(status, 503)
        self.assertRegex(body.decode(), r"^<\?xml[^>]*>\s*<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
                                        r"<Message>[^<]+</Message></Error></Errors><RequestID>[^<]+</RequestID>"
                                        r"</Response>$")
        for service, action in (("elasticloadbalancing", "DescribeTargetGroups"), ("monitoring", "DescribeAlarms")):
            status, _, body = raw_call(self.key, service, f"Action={action}&Version=2015-12-01".encode())
            self.assertEqual(status, 400)
            self.assertRegex(body.decode(), r"^<ErrorResponse( xmlns=\"[^\"]+\")?><Error><Type>Sender</Type>"
                                            r"<Code>Throttling</Code><Message>[^<]+</Message></Error>"
                                            r"<RequestId>[^<]+</RequestId></ErrorResponse>$")
        status, headers, body = raw_call(self.key, "dynamodb", b"{}", "DynamoDB_20120810.ListTables",
                                         "application/x-amz-json-1.0")
        self.assertEqual((status, headers["content-type"]), (400, "application/x-amz-json-1.0"))
        self.assertEqual(json.loads(body)["__type"], "com.amazonaws.dynamodb.v20120810#ThrottlingException")
        self.assertIn("message", json.loads(body))

        expected = {
            "ec2": (503, "RequestLimitExceeded", lambda c: c.describe_instances()),
            "elbv2": (400, "Throttling", lambda c: c.describe_target_groups()),
            "dynamodb": (400, "ThrottlingException", lambda c: c.list_tables()),
            "s3": (503, "SlowDown", lambda c: c.list_objects_v2(Bucket="any")),
            "stepfunctions": (400, "ThrottlingException", lambda c: c.list_state_machines()),
            "events": (400, "ThrottlingException", lambda c: c.list_rules()),
            "cloudwatch": (None, None, lambda c: c.describe_alarms()),
            "sqs": (400, "ThrottlingException", lambda c: c.list_queues()),
        }
        for service, (status, code, call) in expected.items():
            with self.subTest(service=service), self.assertRaises(ClientError) as caught:
                call(self.faulty(service))
            error = caught.exception.response
            if status is not None:
                self.assertEqual((error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]),
                                 (status, code))
            else:  # whichever protocol this botocore speaks to CloudWatch
                self.assertIn(error["Error"]["Code"], ("Throttling", "ThrottlingException"))
        self.assertEqual(self.counts()["injected"], {"throttle": 3 + 1 + len(expected)})

    def test_server_errors_before_and_after_the_request_is_applied(self):
        """error-before: 500/503 and nothing happened; error-after: the write happened and
        its answer was lost (a 500/503 instead)."""
        s3 = self.client("s3")
        bucket = f"faults-{self.suffix}"
        s3.create_bucket(Bucket=bucket)
        for kind in ("error-before", "error-after"):
            self.plan(rate=1.0, kinds=[kind])
            for service, call in (("s3", lambda c: c.put_object(Bucket=bucket, Key=kind, Body=b"x")),
                                  ("ec2", lambda c: c.describe_instances()),
                                  ("elbv2", lambda c: c.describe_target_groups()),
                                  ("dynamodb", lambda c: c.list_tables())):
                with self.subTest(kind=kind, service=service), self.assertRaises(ClientError) as caught:
                    call(self.faulty(service))
                error = caught.exception.response
                self.assertIn(error["ResponseMetadata"]["HTTPStatusCode"], (500, 503))
                self.assertIn(error["Error"]["Code"], ("InternalError", "InternalFailure", "InternalServerError",
                                                       "Unavailable", "ServiceUnavailable"))
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        self.assertEqual(keys, ["error-after"], "only the after-kind reached moto")
        self.assertEqual(self.counts()["injected"], {"error-after": 4})

    def test_connection_resets_before_and_after_the_request_is_applied(self):
        """The connection is reset with no response (the client reads ECONNRESET); the
        after-kind applies the request first."""
        s3 = self.client("s3")
        bucket = f"resets-{self.suffix}"
        s3.create_bucket(Bucket=bucket)
        from botocore.exceptions import ConnectionClosedError
        for kind in ("reset-before", "reset-after"):
            self.plan(rate=1.0, kinds=[kind])
            with self.assertRaises(ConnectionResetError):
                raw_call(self.key, "ec2", b"Action=DescribeInstances&Version=2016-11-15")
            with self.assertRaises(ConnectionClosedError):
                self.faulty("s3").put_object(Bucket=bucket, Key=kind, Body=b"x")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        self.assertEqual(keys, ["reset-after"])
        self.assertEqual(self.counts()["by_action"],
                         {"ec2:DescribeInstances": {"reset-after": 1}, "s3:PutObject": {"reset-after": 1}})

    def test_rate_zero_injects_nothing_and_latency_is_added(self):
        self.plan(rate=0.0, latency_ms=[60, 60])
        ec2 = self.faulty("ec2")
        started = time.monotonic()
        for _ in range(10):
            ec2.describe_instances()
        self.assertGreaterEqual(time.monotonic() - started, 0.6)
        counts = self.counts()
        self.assertEqual((counts["requests"], counts["total"], counts["injected"]), (10, 0, {}))
        self.assertEqual(counts["latency_ms_total"], 600.0)

    def outcomes(self, n: int) -> list[str]:
        ec2 = self.faulty("ec2")
        seen = []
        for _ in range(n):
            try:
                ec2.describe_instances()
                seen.append("ok")
            except ClientError as err:
                seen.append(err.response["Error"]["Code"])
            except Exception as err:  # a reset
                seen.append(type(err).__name__)
        return seen

    def test_same_seed_same_sequence(self):
        self.plan(rate=0.5, seed=7)
        first = self.outcomes(30)
        self.plan(rate=0.5, seed=7)
        self.assertEqual(self.outcomes(30), first)
        self.assertGreater(first.count("ok"), 0)
        self.assertGreater(len(set(first)), 2, f"several kinds in {first}")
        self.plan(rate=0.5, seed=8)
        self.assertNotEqual(self.outcomes(30), first)
        self.assertEqual(self.counts()["requests"], 30)

    def test_faults_only_for_the_configured_key_and_services_and_delete_stops(self):
        self.plan(rate=1.0, kinds=["throttle"], services=["ec2"])
        self.client("ec2").describe_instances()  # another key: untouched
        self.faulty("dynamodb").list_tables()  # not a faulty service
        with self.assertRaises(ClientError):
            self.faulty("ec2").describe_instances()
        status, doc = faults_request("DELETE", f"?access_key={self.key}")
        self.assertEqual((status, doc["active"], doc["total"]), (200, False, 1))
        self.faulty("ec2").describe_instances()  # stopped
        counts = self.counts()
        self.assertEqual((counts["requests"], counts["by_action"]), (1, {"ec2:DescribeInstances": {"throttle": 1}}))
        status, everything = faults_request("GET")
        self.assertEqual(status, 200)
        self.assertNotIn("test", everything)

    def test_bad_plans_are_refused(self):
        for plan in ({"rate": 0.1}, {"access_key": "k", "rate": 2}, {"access_key": "k", "latency_ms": [5, 1]},
                     {"access_key": "k", "kinds": ["meteor"]}):
            status, doc = faults_request("POST", "", plan)
            self.assertEqual(status, 400, plan)
            self.assertIn("error", doc)
        self.assertEqual(faults_request("GET", "?access_key=never-configured")[0], 404)



# --- usage accounting ------------------------------------------------------------------------


def usage_request(method: str, query: str = "") -> dict:
    request = urllib.request.Request(f"{EMULATOR_URL}/_greenlight/usage{query}", method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


class UsageTest(EmulatorTestCase):
    """`/_greenlight/usage`: calls per key and action, DynamoDB capacity as AWS computes it,
    conditional-write conflicts."""

    def setUp(self) -> None:
        super().setUp()
        self.key = f"AKIDUSAGE{self.suffix.upper()}"
        self.ddb = self.signed("dynamodb")

    def tearDown(self) -> None:
        faults_request("DELETE", f"?access_key={self.key}")
        usage_request("DELETE", f"?access_key={self.key}")

    def signed(self, service: str):
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.key, aws_secret_access_key="test",
                            config=Config(retries={"total_max_attempts": 1}))

    def usage(self) -> dict:
        doc = usage_request("GET", f"?access_key={self.key}")
        self.assertEqual(list(doc), [self.key])
        return doc[self.key]

    def units(self) -> tuple[float, float]:
        dynamodb = self.usage()["dynamodb"]
        return dynamodb["read_units"], dynamodb["write_units"]

    def table(self, range_key: bool = False) -> str:
        name = f"u-{self.suffix}"
        keys = [("pk", "HASH")] + ([("sk", "RANGE")] if range_key else [])
        self.client("dynamodb").create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": a, "KeyType": t} for a, t in keys],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a, _ in keys])
        return name

    def test_calls_are_counted_per_key_including_faulted_ones(self):
        ec2 = self.signed("ec2")
        ec2.describe_instances()
        ec2.describe_instances()
        self.ddb.list_tables()
        status, doc = faults_request("POST", "", {"access_key": self.key, "rate": 1.0, "kinds": ["throttle"],
                                                  "services": ["ec2"]})
        self.assertEqual(status, 200, doc)
        with self.assertRaises(ClientError):
            ec2.describe_instances()
        self.client("ec2").describe_instances()  # another key
        usage = self.usage()
        self.assertEqual(usage["calls"], {"dynamodb:ListTables": 1, "ec2:DescribeInstances": 3})
        self.assertEqual(usage["dynamodb"], {"read_units": 0.0, "write_units": 0.0,
                                             "conditional_check_failures": 0, "transaction_conflicts": 0})
        self.assertIn(self.key, usage_request("GET"))
        # The call log keeps its shape: sorted sets.
        with urllib.request.urlopen(f"{self.url}/_greenlight/calls", timeout=5) as response:
            self.assertEqual(json.load(response)[self.key], ["dynamodb:ListTables", "ec2:DescribeInstances"])
        # DELETE answers what it clears, then the key starts from zero.
        self.assertEqual(usage_request("DELETE", f"?access_key={self.key}")[self.key]["calls"],
                         usage["calls"])
        self.assertEqual(self.usage()["calls"], {})
        self.assertNotIn(self.key, usage_request("GET"))

    def test_write_capacity_and_failed_conditions(self):
        table = self.table()
        small = {"pk": {"S": "small"}, "n": {"N": "42"}}
        answer = self.ddb.put_item(TableName=table, Item=small, ReturnConsumedCapacity="TOTAL")
        self.assertEqual(answer["ConsumedCapacity"], {"TableName": table, "CapacityUnits": 1.0,
                                                      "WriteCapacityUnits": 1.0})
        # 2 + 3 + 4 + 1500 bytes: over 1 KB, 2 units.
        big = {"pk": {"S": "big"}, "data": {"S": "x" * 1500}}
        answer = self.ddb.put_item(TableName=table, Item=big, ReturnConsumedCapacity="INDEXES")
        self.assertEqual(answer["ConsumedCapacity"], {"TableName": table, "CapacityUnits": 2.0,
                                                      "WriteCapacityUnits": 2.0,
                                                      "Table": {"CapacityUnits": 2.0, "WriteCapacityUnits": 2.0}})
        self.assertEqual(self.units(), (0.0, 3.0))
        # A failed condition is counted and still charged on the existing item's size.
        with self.assertRaises(ClientError) as caught:
            self.ddb.put_item(TableName=table, Item={"pk": {"S": "big"}},
                              ConditionExpression="attribute_not_exists(pk)")
        self.assertEqual(caught.exception.response["Error"]["Code"], "ConditionalCheckFailedException")
        self.assertEqual(self.units(), (0.0, 5.0))
        # Updating the big item down to a small one costs its size before.
        self.ddb.update_item(TableName=table, Key={"pk": {"S": "big"}}, UpdateExpression="REMOVE #d",
                             ExpressionAttributeNames={"#d": "data"})
        self.ddb.delete_item(TableName=table, Key={"pk": {"S": "big"}})
        self.assertEqual(self.units(), (0.0, 8.0))
        # Transactions: twice per item, also when cancelled.
        answer = self.ddb.transact_write_items(ReturnConsumedCapacity="TOTAL", TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "t1"}}}},
            {"Update": {"TableName": table, "Key": {"pk": {"S": "small"}}, "UpdateExpression": "SET n = :n",
                        "ExpressionAttributeValues": {":n": {"N": "43"}}}},
        ])
        self.assertEqual(answer["ConsumedCapacity"], [{"TableName": table, "CapacityUnits": 4.0,
                                                       "WriteCapacityUnits": 4.0}])
        with self.assertRaises(ClientError) as caught:
            self.ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "t2"}}}},
                {"Put": {"TableName": table, "Item": {"pk": {"S": "t1"}},
                         "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        self.assertEqual(caught.exception.response["Error"]["Code"], "TransactionCanceledException")
        usage = self.usage()["dynamodb"]
        self.assertEqual((usage["write_units"], usage["conditional_check_failures"], usage["transaction_conflicts"]),
                         (16.0, 2, 0))
        # Unasked, no ConsumedCapacity (moto answers a constant for batches).
        answer = self.ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": "b1"}}}},
                                                                 {"PutRequest": {"Item": {"pk": {"S": "b2"}}}}]})
        self.assertNotIn("ConsumedCapacity", answer)
        self.assertEqual(self.units(), (0.0, 18.0))

    def test_read_capacity(self):
        table = self.table(range_key=True)
        writer = self.client("dynamodb")  # the fixture's key: this key's writes stay at zero
        for sk in ("1", "2", "3"):  # 2 + 1 + 2 + 1 + 4 + 1500 = 1510 bytes each
            writer.put_item(TableName=table, Item={"pk": {"S": "q"}, "sk": {"S": sk}, "data": {"S": "x" * 1500}})
        key = {"pk": {"S": "q"}, "sk": {"S": "1"}}
        got = self.ddb.get_item(TableName=table, Key=key, ReturnConsumedCapacity="TOTAL")
        self.assertEqual(got["ConsumedCapacity"], {"TableName": table, "CapacityUnits": 0.5, "ReadCapacityUnits": 0.5})
        got = self.ddb.get_item(TableName=table, Key=key, ConsistentRead=True, ReturnConsumedCapacity="TOTAL",
                                ProjectionExpression="pk")  # charged on the whole item
        self.assertEqual(got["ConsumedCapacity"]["CapacityUnits"], 1.0)
        self.ddb.get_item(TableName=table, Key={"pk": {"S": "q"}, "sk": {"S": "missing"}})  # the minimum
        self.assertEqual(self.units(), (2.0, 0.0))
        # Query: 3 × 1510 bytes evaluated, rounded up to 8 KB once; the filter changes nothing.
        query = dict(TableName=table, KeyConditionExpression="pk = :pk",
                     ExpressionAttributeValues={":pk": {"S": "q"}, ":none": {"S": "none"}},
                     FilterExpression="#d = :none", ExpressionAttributeNames={"#d": "data"})
        answer = self.ddb.query(**query, ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
        self.assertEqual((answer["Count"], answer["ScannedCount"]), (0, 3))
        self.assertEqual(answer["ConsumedCapacity"], {"TableName": table, "CapacityUnits": 2.0,
                                                      "ReadCapacityUnits": 2.0})
        self.ddb.query(**query)  # eventually consistent: 1.0
        self.assertEqual(self.units(), (5.0, 0.0))
        # Batches per item (each rounded up on its own), transactions twice.
        answer = self.ddb.batch_get_item(ReturnConsumedCapacity="TOTAL", RequestItems={table: {
            "Keys": [key, {"pk": {"S": "q"}, "sk": {"S": "2"}}], "ConsistentRead": True}})
        self.assertEqual(answer["ConsumedCapacity"], [{"TableName": table, "CapacityUnits": 2.0,
                                                       "ReadCapacityUnits": 2.0}])
        answer = self.ddb.transact_get_items(ReturnConsumedCapacity="TOTAL", TransactItems=[
            {"Get": {"TableName": table, "Key": key}}])
        self.assertEqual(answer["ConsumedCapacity"], [{"TableName": table, "CapacityUnits": 2.0,
                                                       "ReadCapacityUnits": 2.0}])
        self.assertEqual(self.units(), (9.0, 0.0))

    def test_faults_before_cost_nothing_after_are_charged(self):
        table = self.table()
        for kind, units in (("throttle", 0.0), ("error-before", 0.0), ("error-after", 1.0)):
            status, doc = faults_request("POST", "", {"access_key": self.key, "rate": 1.0, "kinds": [kind]})
            self.assertEqual(status, 200, doc)
            with self.subTest(kind=kind), self.assertRaises(ClientError):
                self.ddb.put_item(TableName=table, Item={"pk": {"S": kind}})
            self.assertEqual(self.units(), (0.0, units))
        self.assertEqual(self.usage()["calls"], {"dynamodb:PutItem": 3})


# --- Lambda Invoke served by loopback handlers, Secrets Manager --------------------------------


def lambda_handlers_request(method: str, query: str = "", doc=None) -> tuple[int, dict]:
    data = json.dumps(doc).encode() if doc is not None else None
    request = urllib.request.Request(f"{EMULATOR_URL}/_greenlight/lambda-handlers{query}", data=data,
                                     method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


class LoopbackFunction:
    """A stand-in Lambda function: an HTTP server on 127.0.0.1 (in a thread) that records each
    request (path, lower-cased headers, body) and answers `status` and `body`, or what
    `respond(body)` returns as (status, body)."""

    def __init__(self, status: int = 200, body: bytes = b'{"status": "SUCCEEDED"}', respond=None) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        function = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                function.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, payload))
                code, answer = respond(payload) if respond else (status, body)
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the emulator gave up waiting (a timeout test)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="loopback-function", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LambdaInvokeTest(EmulatorTestCase):
    """Lambda Invoke answered from a loopback handler registered at
    `/_greenlight/lambda-handlers` (section 16 of the README)."""

    def setUp(self) -> None:
        super().setUp()
        self.key = f"AKIDLAMBDA{self.suffix.upper()}"
        self.name = f"hook-{self.suffix}"
        self.arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.name}"
        self.lam = self.signed("lambda")
        self.functions: list[LoopbackFunction] = []

    def tearDown(self) -> None:
        faults_request("DELETE", f"?access_key={self.key}")
        lambda_handlers_request("DELETE", f"?function_name={self.name}")
        for function in self.functions:
            function.close()

    def signed(self, service: str):
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.key, aws_secret_access_key="test",
                            config=Config(retries={"total_max_attempts": 1}, read_timeout=30))

    def serve(self, timeout_s: float | None = None, **kwargs) -> LoopbackFunction:
        function = LoopbackFunction(**kwargs)
        self.functions.append(function)
        doc = {"function_name": self.name, "url": function.url}
        if timeout_s is not None:
            doc["timeout_s"] = timeout_s
        status, answer = lambda_handlers_request("POST", "", doc)
        self.assertEqual(status, 200, answer)
        self.assertEqual((answer["function_arn"], answer["url"]), (self.arn, function.url))
        return function

    def test_invoke_forwards_the_exact_payload_and_returns_the_handlers_answer(self):
        answer = b'{"status": "SUCCEEDED", "reason": "all green"}'
        function = self.serve(body=answer)
        payload = '{"hook": "pre-traffic",\n  "n": 1.50, "s": "\\u00e9t\u00e9"}'.encode()
        response = self.lam.invoke(FunctionName=self.name, Payload=payload)
        self.assertEqual(response["StatusCode"], 200)
        self.assertNotIn("FunctionError", response)
        self.assertEqual(response["ExecutedVersion"], "$LATEST")
        self.assertEqual(response["ResponseMetadata"]["HTTPHeaders"]["content-type"], "application/json")
        self.assertEqual(response["Payload"].read(), answer)
        [(path, headers, body)] = function.requests
        self.assertEqual((path, body, headers["content-type"]), ("/hook", payload, "application/json"))
        self.assertEqual(headers["lambda-runtime-invoked-function-arn"], self.arn)
        self.assertEqual(lambda_handlers_request("GET", f"?function_name={self.name}")[1]["invocations"], 1)

    def test_handler_answering_500_is_an_unhandled_function_error(self):
        self.serve(status=500, body=b"boom: the database is on fire")
        response = self.lam.invoke(FunctionName=self.name, Payload=b'{"hook": "post-traffic"}')
        self.assertEqual((response["StatusCode"], response["FunctionError"]), (200, "Unhandled"))
        error = json.loads(response["Payload"].read())
        self.assertEqual(set(error), {"errorMessage", "errorType"})
        self.assertEqual(error["errorType"], "Greenlight.HandlerError")
        self.assertIn("HTTP 500", error["errorMessage"])
        self.assertIn("boom: the database is on fire", error["errorMessage"])

    def test_unreachable_or_slow_handler_is_an_unhandled_function_error(self):
        gone = LoopbackFunction()
        gone.close()  # connections to its port are refused
        status, doc = lambda_handlers_request("POST", "", {"function_name": self.name, "url": gone.url})
        self.assertEqual(status, 200, doc)
        response = self.lam.invoke(FunctionName=self.name, Payload=b"{}")
        error = json.loads(response["Payload"].read())
        self.assertEqual((response["StatusCode"], response["FunctionError"], error["errorType"]),
                         (200, "Unhandled", "Greenlight.HandlerUnreachable"))
        self.assertIn("ConnectionRefusedError", error["errorMessage"])

        self.serve(timeout_s=0.3, respond=lambda body: (time.sleep(1.5), (200, b"{}"))[1])
        started = time.monotonic()
        response = self.lam.invoke(FunctionName=self.name, Payload=b"{}")
        self.assertLess(time.monotonic() - started, 1.2)
        error = json.loads(response["Payload"].read())
        self.assertEqual((response["FunctionError"], error["errorType"]), ("Unhandled", "Sandbox.Timedout"))
        self.assertIn("Task timed out after 0.30 seconds", error["errorMessage"])

    def test_unregistered_function_is_resource_not_found(self):
        missing = f"missing-{self.suffix}"
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName=missing, Payload=b"{}")
        error = caught.exception.response
        self.assertEqual((error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]),
                         (404, "ResourceNotFoundException"))
        self.assertEqual(error["Error"]["Message"],
                         f"Function not found: arn:aws:lambda:us-east-1:123456789012:function:{missing}")
        # The wire shape, for a raw SigV4 client (the ARN percent-encoded in the path).
        arn = urllib.parse.quote(f"arn:aws:lambda:us-east-1:123456789012:function:{missing}:live", safe="")
        status, headers, body = raw_call(self.key, "lambda", b"{}", content_type="application/json",
                                         path=f"/2015-03-31/functions/{arn}/invocations")
        self.assertEqual((status, headers["x-amzn-errortype"], headers["content-type"]),
                         (404, "ResourceNotFoundException", "application/json"))
        self.assertEqual(json.loads(body), {
            "Type": "User",
            "Message": f"Function not found: arn:aws:lambda:us-east-1:123456789012:function:{missing}:live"})

    def test_arns_and_qualifiers_resolve_to_the_same_handler(self):
        function = self.serve()
        for function_name, qualifier, version in ((f"{self.arn}:7", None, "7"),
                                                  (f"123456789012:function:{self.name}", None, "$LATEST"),
                                                  (f"{self.name}:live", None, "live"),
                                                  (self.name, "live", "live"),
                                                  (f"{self.arn}:live", "live", "live")):
            with self.subTest(function_name=function_name, qualifier=qualifier):
                extra = {"Qualifier": qualifier} if qualifier else {}
                response = self.lam.invoke(FunctionName=function_name, Payload=b'{"n": 1}', **extra)
                self.assertEqual((response["StatusCode"], response["ExecutedVersion"]), (200, version))
                self.assertEqual(json.loads(response["Payload"].read()), {"status": "SUCCEEDED"})
        # A raw SigV4 request, the full ARN percent-encoded in the path (greenlight's client).
        path = f"/2015-03-31/functions/{urllib.parse.quote(self.arn + ':3', safe='')}/invocations"
        status, headers, body = raw_call(self.key, "lambda", b'{"n": 2}', content_type="application/json",
                                         path=path)
        self.assertEqual((status, headers["x-amz-executed-version"], json.loads(body)),
                         (200, "3", {"status": "SUCCEEDED"}))
        self.assertEqual([body for _, _, body in function.requests], [b'{"n": 1}'] * 5 + [b'{"n": 2}'])
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName=f"{self.name}:prod", Qualifier="live", Payload=b"{}")
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidParameterValueException")
        with self.assertRaises(ClientError) as caught:  # another region's function of the same name
            self.lam.invoke(FunctionName=self.arn.replace("us-east-1", "eu-west-1"), Payload=b"{}")
        self.assertEqual(caught.exception.response["Error"]["Code"], "ResourceNotFoundException")
        self.assertEqual(len(function.requests), 6)

    def test_invoke_is_logged_as_lambda_invoke_function(self):
        self.serve()
        self.lam.invoke(FunctionName=self.name, Payload=b"{}")
        self.lam.list_functions()
        with urllib.request.urlopen(f"{self.url}/_greenlight/calls", timeout=5) as response:
            calls = json.load(response)
        self.assertEqual(calls[self.key], ["lambda:InvokeFunction", "lambda:ListFunctions"])
        usage = usage_request("GET", f"?access_key={self.key}")[self.key]["calls"]
        self.assertEqual(usage, {"lambda:InvokeFunction": 1, "lambda:ListFunctions": 1})
        usage_request("DELETE", f"?access_key={self.key}")

    def test_faults_hit_lambda_invoke_function(self):
        function = self.serve()
        status, doc = faults_request("POST", "", {"access_key": self.key, "rate": 1.0, "kinds": ["throttle"],
                                                  "services": ["lambda"]})
        self.assertEqual(status, 200, doc)
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName=self.name, Payload=b"{}")
        error = caught.exception.response
        self.assertEqual((error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]),
                         (429, "TooManyRequestsException"))
        self.assertEqual(function.requests, [], "a throttled Invoke never reaches the function")
        self.client("lambda").invoke(FunctionName=self.name, Payload=b"{}")  # another key: untouched
        self.assertEqual(len(function.requests), 1)
        self.assertEqual(faults_request("GET", f"?access_key={self.key}")[1]["by_action"],
                         {"lambda:InvokeFunction": {"throttle": 1}})

        status, doc = faults_request("POST", "", {"access_key": self.key, "rate": 1.0, "kinds": ["error-after"],
                                                  "services": ["lambda"]})
        self.assertEqual(status, 200, doc)
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName=self.name, Payload=b'{"after": true}')
        error = caught.exception.response
        self.assertIn(error["ResponseMetadata"]["HTTPStatusCode"], (500, 503))
        self.assertEqual(error["Error"]["Code"], "ServiceException")
        self.assertEqual(function.requests[-1][2], b'{"after": true}', "the function ran, its answer was lost")
        self.assertEqual(faults_request("GET", f"?access_key={self.key}")[1]["by_action"],
                         {"lambda:InvokeFunction": {"error-after": 1}})

    def test_event_and_dry_run_invocations(self):
        function = self.serve()
        response = self.lam.invoke(FunctionName=self.name, InvocationType="Event", Payload=b'{"e": 1}')
        self.assertEqual((response["StatusCode"], response["Payload"].read()), (202, b""))
        wait_until(lambda: function.requests, what="the event delivered")
        self.assertEqual(function.requests[0][2], b'{"e": 1}')
        response = self.lam.invoke(FunctionName=self.name, InvocationType="DryRun", Payload=b"{}")
        self.assertEqual(response["StatusCode"], 204)
        time.sleep(0.2)
        self.assertEqual(len(function.requests), 1, "DryRun does not run the function")
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName=f"missing-{self.suffix}", InvocationType="DryRun")
        self.assertEqual(caught.exception.response["Error"]["Code"], "ResourceNotFoundException")

    def test_payload_limits_and_non_json_payloads(self):
        function = self.serve()
        largest = b'"' + b"a" * (6291456 - 2) + b'"'
        self.assertEqual(self.lam.invoke(FunctionName=self.name, Payload=largest)["StatusCode"], 200)
        self.assertEqual(function.requests[-1][2], largest)
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName=self.name, Payload=largest + b" ")
        error = caught.exception.response
        self.assertEqual((error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]),
                         (413, "RequestEntityTooLargeException"))
        self.assertEqual(error["Error"]["Message"],
                         "Request must be smaller than 6291456 bytes for the InvokeFunction operation")
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName=self.name, Payload=b"not json")
        self.assertEqual(caught.exception.response["Error"]["Code"], "InvalidRequestContentException")
        self.assertEqual(len(function.requests), 1)

    def test_handler_may_call_the_emulator_back(self):
        """The Invoke is served without the emulator's lock: the function can use AWS."""

        def respond(body: bytes) -> tuple[int, bytes]:
            reservations = self.client("ec2").describe_instances()["Reservations"]
            return 200, json.dumps({"reservations": len(reservations)}).encode()

        self.serve(timeout_s=10, respond=respond)
        started = time.monotonic()
        response = self.lam.invoke(FunctionName=self.name, Payload=b"{}")
        self.assertNotIn("FunctionError", response)
        self.assertIn("reservations", json.loads(response["Payload"].read()))
        self.assertLess(time.monotonic() - started, 5)

    def test_handler_registration_is_validated_listed_replaced_and_removed(self):
        for doc, words in (({"url": "http://127.0.0.1:1/"}, "function_name"),
                           ({"function_name": "", "url": "http://127.0.0.1:1/"}, "function_name"),
                           ({"function_name": "bad name!", "url": "http://127.0.0.1:1/"}, "function_name"),
                           ({"function_name": f"{self.name}:live", "url": "http://127.0.0.1:1/"}, "qualifier"),
                           ({"function_name": self.name}, "url"),
                           ({"function_name": self.name, "url": "https://127.0.0.1:1/"}, "http://"),
                           ({"function_name": self.name, "url": "127.0.0.1:1"}, "http://"),
                           ({"function_name": self.name, "url": "http://example.com/hook"}, "loopback"),
                           ({"function_name": self.name, "url": "http://10.1.2.3:80/"}, "loopback"),
                           ({"function_name": self.name, "url": "http://127.0.0.1:1/", "timeout_s": 0}, "timeout_s"),
                           ([], "JSON object")):
            with self.subTest(doc=doc):
                status, answer = lambda_handlers_request("POST", "", doc)
                self.assertEqual(status, 400, answer)
                self.assertIn(words, answer["error"])
        self.assertEqual(lambda_handlers_request("DELETE")[0], 400)
        self.assertEqual(lambda_handlers_request("DELETE", f"?function_name={self.name}")[0], 404)
        for url in ("http://localhost:1/a", "http://[::1]:1/b", "http://127.9.9.9:1/c"):
            status, answer = lambda_handlers_request("POST", "", {"function_name": self.arn, "url": url})
            self.assertEqual((status, answer["function_name"], answer["url"]), (200, self.name, url))
        status, listed = lambda_handlers_request("GET")
        self.assertEqual((status, listed[self.arn]["url"], listed[self.arn]["timeout_s"]),
                         (200, "http://127.9.9.9:1/c", 60.0))
        status, removed = lambda_handlers_request("DELETE", f"?function_name={self.name}")
        self.assertEqual((status, removed["function_arn"]), (200, self.arn))
        self.assertNotIn(self.arn, lambda_handlers_request("GET")[1])
        with self.assertRaises(ClientError) as caught:
            self.lam.invoke(FunctionName=self.name, Payload=b"{}")
        self.assertEqual(caught.exception.response["Error"]["Code"], "ResourceNotFoundException")


class SecretsManagerTest(EmulatorTestCase):
    """moto's Secrets Manager through the emulator, logged as IAM names it."""

    def test_secret_round_trip_is_logged_as_get_secret_value(self):
        key = f"AKIDSECRET{self.suffix.upper()}"
        secrets = boto3.client("secretsmanager", endpoint_url=self.url, region_name="us-east-1",
                               aws_access_key_id=key, aws_secret_access_key="test")
        name = f"greenlight/hooks/{self.suffix}"
        secrets.create_secret(Name=name, SecretString='{"token": "s3cr3t"}')
        self.assertEqual(secrets.get_secret_value(SecretId=name)["SecretString"], '{"token": "s3cr3t"}')
        # A raw SigV4 request as greenlight sends it (JSON 1.1 protocol on `POST /`).
        status, headers, body = raw_call(key, "secretsmanager", json.dumps({"SecretId": name}).encode(),
                                         "secretsmanager.GetSecretValue", "application/x-amz-json-1.1")
        self.assertEqual((status, json.loads(body)["SecretString"]), (200, '{"token": "s3cr3t"}'))
        with urllib.request.urlopen(f"{self.url}/_greenlight/calls", timeout=5) as response:
            calls = json.load(response)
        self.assertEqual(calls[key], ["secretsmanager:CreateSecret", "secretsmanager:GetSecretValue"])


if __name__ == "__main__":
    unittest.main()
