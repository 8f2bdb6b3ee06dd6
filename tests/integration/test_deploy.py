"""`make deploy` offline: infra/deploy.py's steps against moto, and the packaged stack,
expanded by the SAM translator, deployed to moto's CloudFormation.

moto cannot create every resource type of the stack; LEFT_OUT lists those (and
docs/deploy.md repeats the list). They are removed before the deploy, and what
refers to them gets a stand-in name. The alarms, which moto's CloudFormation
cannot create, are created through moto's CloudWatch API from the same
definitions, so their parameters are checked by botocore and moto all the same.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from chalice.test import Client
from moto import mock_aws
from moto.cloudformation.parsing import get_model_map
from nacl.signing import SigningKey
from pydantic import SecretStr

from infra import deploy
from infra.emulation import load_template

STACK = "em-deploy-test"
REGION = "us-east-1"
OPERATOR_KEY = SigningKey(bytes(range(32))).verify_key.encode().hex()

# Resource types of the expanded stack that moto's CloudFormation cannot create.
LEFT_OUT = {
    "AWS::ApiGateway::Account",
    "AWS::ApiGateway::Stage",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Deployment",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Stage",
    "AWS::CloudFront::Distribution",
    "AWS::CloudFront::OriginAccessControl",
    "AWS::CloudWatch::Alarm",
    "AWS::IoT::TopicRule",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Logs::MetricFilter",
    "AWS::S3::BucketPolicy",
}
# moto knows this type, but not a REST API defined by an OpenAPI body: it
# refuses the deployment ("The REST API doesn't contain any methods").
LEFT_OUT_BODY_API = {"AWS::ApiGateway::Deployment"}

FUNCTIONS = {
    "APIHandler",
    "IngestReading",
    "SettleDuePurchases",
    "ExpireUnsoldCredits",
    "ResolveDueDisputes",
    "PushMarketStats",
    "PublishMarketEvents",
    "WatchMeters",
    "PublishDisputeEvents",
    "WebsocketConnect",
    "WebsocketMessage",
    "WebsocketDisconnect",
}


def sam_translate(template: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's AWS::Serverless-2016-10-31 transform, run here."""
    from samtranslator.translator.transform import (  # type: ignore[import-not-found, import-untyped, unused-ignore]
        transform,
    )

    class NoManagedPolicies:
        # The template names no managed policy through SAM's `Policies`.
        def load(self) -> dict[str, str]:
            return {}

    translated: dict[str, Any] = transform(copy.deepcopy(template), {}, NoManagedPolicies())
    return translated


def _stand_in(logical_id: str, attribute: str | None = None) -> str:
    if attribute:
        return f"arn:aws:stand-in:{REGION}:123456789012:{logical_id}/{attribute}"
    return f"{logical_id.lower()}-stand-in"


def _replace_references(node: Any, gone: set[str]) -> Any:
    if isinstance(node, list):
        return [_replace_references(item, gone) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"} and node["Ref"] in gone:
        return _stand_in(node["Ref"])
    if set(node) == {"Fn::GetAtt"} and node["Fn::GetAtt"][0] in gone:
        return _stand_in(*node["Fn::GetAtt"][:2])
    if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):

        def stand_in(match: re.Match[str]) -> str:
            name, _, attribute = match.group(1).partition(".")
            return _stand_in(name, attribute or None) if name in gone else match.group(0)

        return {"Fn::Sub": re.sub(r"\$\{([\w.]+)\}", stand_in, node["Fn::Sub"])}
    return {key: _replace_references(value, gone) for key, value in node.items()}


def without_left_out(template: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The template less what moto cannot create; returns it and the logical ids removed."""
    gone = {
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] in LEFT_OUT | LEFT_OUT_BODY_API
    }
    kept = {k: v for k, v in template["Resources"].items() if k not in gone}
    for resource in kept.values():
        if "DependsOn" in resource:
            depends = resource["DependsOn"]
            remaining = [
                d for d in ([depends] if isinstance(depends, str) else depends) if d not in gone
            ]
            if remaining:
                resource["DependsOn"] = remaining
            else:
                del resource["DependsOn"]
    reduced = _replace_references({**template, "Resources": kept}, gone)
    return reduced, gone


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam_template_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """infra/deploy.py's own package step (chalice package --merge-template)."""
    return deploy.package(tmp_path_factory.mktemp("deploy") / "package", "dev", REGION)


def test_every_stage_packages_the_same_stack(sam_template_path: Path, tmp_path: Path) -> None:
    dev = yaml.safe_load(sam_template_path.read_text())
    prod = yaml.safe_load(deploy.package(tmp_path / "prod", "prod", REGION).read_text())

    assert set(prod["Resources"]) == set(dev["Resources"])
    for logical_id, resource in dev["Resources"].items():
        if resource["Type"] in {"AWS::Serverless::Function", "AWS::IAM::Role"}:
            other = prod["Resources"][logical_id]["Properties"]
            # Only the tags name the stage.
            assert {k: v for k, v in other.items() if k != "Tags"} == {
                k: v for k, v in resource["Properties"].items() if k != "Tags"
            }, logical_id


@pytest.fixture
def clients(aws_credentials: None) -> Iterator[deploy.Clients]:
    with mock_aws():
        yield deploy.Clients(boto3.Session(region_name=REGION))


# --- the steps before the stack ------------------------------------------------------------


def test_the_artifact_bucket_is_created_private_once(clients: deploy.Clients) -> None:
    name = deploy.ensure_artifact_bucket(clients)

    assert name == f"energy-marketplace-artifacts-123456789012-{REGION}"
    assert deploy.ensure_artifact_bucket(clients) == name
    s3 = clients("s3")
    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_the_signing_key_is_generated_once_as_a_secure_string_and_never_shown(
    clients: deploy.Clients, capsys: pytest.CaptureFixture[str]
) -> None:
    public_key = deploy.ensure_signing_key(clients, STACK)
    again = deploy.ensure_signing_key(clients, STACK)

    ssm = clients("ssm")
    name = f"/energy-marketplace/{STACK}/receipt-signing-key"
    stored = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert stored["Type"] == "SecureString"
    seed = stored["Value"]
    assert again == public_key == SigningKey(bytes.fromhex(seed)).verify_key.encode().hex()
    captured = capsys.readouterr()
    assert seed not in captured.out + captured.err
    # Another stack gets its own key.
    assert deploy.ensure_signing_key(clients, "another-stack") != public_key


def test_a_parameter_that_holds_no_seed_stops_the_deploy(clients: deploy.Clients) -> None:
    clients("ssm").put_parameter(
        Name=deploy.signing_key_parameter(STACK), Type="SecureString", Value="not hex"
    )
    with pytest.raises(deploy.DeployError, match="does not hold a 32-byte hex Ed25519 seed"):
        deploy.ensure_signing_key(clients, STACK)


def test_the_operator_key_is_given_once_and_found_after(clients: deploy.Clients) -> None:
    with pytest.raises(deploy.DeployError, match="give OPERATOR_PUBLIC_KEY"):
        deploy.ensure_operator_key(clients, STACK, None)
    with pytest.raises(deploy.DeployError, match="64 hex characters"):
        deploy.ensure_operator_key(clients, STACK, "not-a-key")

    assert deploy.ensure_operator_key(clients, STACK, OPERATOR_KEY.upper()) == OPERATOR_KEY
    assert deploy.ensure_operator_key(clients, STACK, None) == OPERATOR_KEY


def test_the_dashboard_upload_types_and_caches_files_and_drops_stale_ones(
    clients: deploy.Clients, tmp_path: Path
) -> None:
    s3 = clients("s3")
    s3.create_bucket(Bucket="dashboard")
    s3.put_object(Bucket="dashboard", Key="assets/old-123.js", Body=b"old")
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "assets" / "index-abc.js").write_text("export {}")

    keys = deploy.upload_dashboard(clients, "dashboard", tmp_path)

    assert keys == ["assets/index-abc.js", "index.html"]
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="dashboard")["Contents"]]
    assert sorted(listed) == keys
    page = s3.head_object(Bucket="dashboard", Key="index.html")
    assert (page["ContentType"], page["CacheControl"]) == ("text/html", "no-cache")
    script = s3.head_object(Bucket="dashboard", Key="assets/index-abc.js")
    assert script["ContentType"] in {"text/javascript", "application/javascript"}
    assert script["CacheControl"] == "public, max-age=31536000, immutable"


def test_the_dashboard_is_built_with_the_stacks_websocket_url_beside_web_dist(
    tmp_path: Path,
) -> None:
    dist = deploy.WEB_DIR / "dist" / "index.html"
    before = dist.stat().st_mtime_ns if dist.exists() else None
    url = "wss://abc123.execute-api.eu-west-1.amazonaws.com/api/"

    built = deploy.build_dashboard(tmp_path / "web", url)

    files = {key for key, _ in deploy.dashboard_files(built)}
    assert "index.html" in files
    scripts = [built / key for key in files if key.endswith(".js")]
    assert any(url.rstrip("/") in script.read_text() for script in scripts)
    # `make run` serves web/dist: the deploy's build leaves it alone.
    assert (dist.stat().st_mtime_ns if dist.exists() else None) == before


def test_the_command_reports_missing_credentials_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    code = deploy.main(["--region", REGION, "--alarm-email", "ops@example.com"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [
        "error: AWS refused a deploy step: Unable to locate credentials"
    ]


def test_the_command_refuses_a_marketplace_id_the_template_would(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert deploy.main(["--marketplace-id", "Not_Valid", "--alarm-email", "a@b.c"]) == 1
    assert "marketplace id 'Not_Valid'" in capsys.readouterr().err
    parameters = load_template()["Parameters"]
    assert parameters["MarketplaceId"]["AllowedPattern"] == deploy.MARKETPLACE_ID_PATTERN.pattern


def test_the_command_refuses_a_missing_alarm_address_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALARM_EMAIL", raising=False)

    assert deploy.main(["--stage", "dev"]) == 1

    assert capsys.readouterr().err.strip().splitlines() == [
        "error: give ALARM_EMAIL=<address>: every alarm is sent there"
    ]


# --- the stack ---------------------------------------------------------------------------------


def test_moto_leaves_out_exactly_the_listed_types(
    deployed: tuple[RecordingClients, dict[str, str], set[str], dict[str, Any]],
) -> None:
    _, _, gone, expanded = deployed
    types = {resource["Type"] for resource in expanded["Resources"].values()}

    assert types - set(get_model_map()) == LEFT_OUT
    assert types >= LEFT_OUT_BODY_API
    assert {expanded["Resources"][logical_id]["Type"] for logical_id in gone} == (
        LEFT_OUT | LEFT_OUT_BODY_API
    )


def _record_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    client.meta.events.register(f"provide-client-params.cloudformation.{operation}", record)
    return calls


class RecordingClients(deploy.Clients):
    """The same clients, with the stack calls' parameters recorded."""

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        self._cloudformation = session.client("cloudformation")
        self.creates = _record_calls(self._cloudformation, "CreateStack")
        self.updates = _record_calls(self._cloudformation, "UpdateStack")

    def __call__(self, service: str) -> Any:
        return self._cloudformation if service == "cloudformation" else super().__call__(service)


@pytest.fixture
def deployed(
    sam_template_path: Path, aws_credentials: None
) -> Iterator[tuple[RecordingClients, dict[str, str], set[str], dict[str, Any]]]:
    """The packaged stack, uploaded and expanded, deployed by infra.deploy to moto."""
    with mock_aws():
        clients = RecordingClients(boto3.Session(region_name=REGION))
        bucket = deploy.ensure_artifact_bucket(clients)
        receipt_key = deploy.ensure_signing_key(clients, STACK)
        key = deploy.upload_artifacts(clients, bucket, STACK, sam_template_path)
        uploaded = yaml.safe_load(clients("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
        # What CloudFormation's SAM transform makes of it, less what moto cannot create.
        expanded = sam_translate(uploaded)
        reduced, gone = without_left_out(expanded)
        clients("s3").put_object(Bucket=bucket, Key="expanded.json", Body=json.dumps(reduced))
        outputs = deploy.deploy_stack(
            clients,
            STACK,
            deploy.template_url(clients, bucket, "expanded.json"),
            lambda protect: deploy.stack_parameters(
                "em-deploy-test",
                OPERATOR_KEY,
                receipt_key,
                "ops@example.com",
                protect_tables=protect,
            ),
        )
        yield clients, outputs, gone, expanded


def test_the_expanded_stack_passes_cfn_lint(
    deployed: tuple[RecordingClients, dict[str, str], set[str], dict[str, Any]],
    tmp_path: Path,
) -> None:
    # cfn-lint checks the SAM template as written (test_infra.py); this checks what
    # CloudFormation creates from it, DeletionPolicy RetainExceptOnCreate included.
    _, _, _, expanded = deployed
    path = tmp_path / "expanded.json"
    path.write_text(json.dumps(expanded))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"cfn-lint found problems:\n{result.stdout}\n{result.stderr}"


def _references(node: Any) -> set[str]:
    """The logical ids a resource refers to (Ref, GetAtt, Sub)."""
    if isinstance(node, list):
        return set().union(*map(_references, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found: set[str] = set()
    if set(node) == {"Ref"}:
        found.add(node["Ref"])
    elif set(node) == {"Fn::GetAtt"}:
        found.add(node["Fn::GetAtt"][0])
    elif set(node) == {"Fn::Sub"}:
        text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
        found |= {name.split(".")[0] for name in re.findall(r"\$\{([\w.:]+)\}", text)}
    return found | set().union(*(_references(v) for v in node.values()))


def _depends_on(resources: dict[str, Any], logical_id: str) -> set[str]:
    """Everything CloudFormation creates before ``logical_id``."""
    seen: set[str] = set()
    todo = [logical_id]
    while todo:
        resource = resources[todo.pop()]
        depends = resource.get("DependsOn", [])
        direct = _references(resource.get("Properties", {})) | set(
            [depends] if isinstance(depends, str) else depends
        )
        for name in direct & set(resources) - seen:
            seen.add(name)
            todo.append(name)
    return seen


def test_every_failure_destination_is_allowed_before_what_sends_to_it(
    deployed: tuple[RecordingClients, dict[str, str], set[str], dict[str, Any]],
) -> None:
    """A mapping or invoke config with an on-failure queue is created after the
    role that may send to that queue (AWS checks the permission on creation)."""
    _, _, _, expanded = deployed
    resources = expanded["Resources"]
    senders = {
        logical_id: resource
        for logical_id, resource in resources.items()
        if resource["Type"] in {"AWS::Lambda::EventSourceMapping", "AWS::Lambda::EventInvokeConfig"}
    }
    assert len(senders) == 4
    for logical_id, resource in senders.items():
        queue = resource["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
        before = _depends_on(resources, logical_id)
        granting = [
            role_id
            for role_id in before
            if resources[role_id]["Type"] == "AWS::IAM::Role"
            for policy in resources[role_id]["Properties"].get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]
            if statement["Action"] == "sqs:SendMessage" and statement["Resource"] == queue
        ]
        assert granting, logical_id


def test_the_code_is_uploaded_and_every_function_points_at_it(
    deployed: tuple[RecordingClients, dict[str, str], set[str], dict[str, Any]],
) -> None:
    clients, _, _, expanded = deployed
    code = {
        logical_id: resource["Properties"]["Code"]
        for logical_id, resource in expanded["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    assert set(code) == FUNCTIONS
    (location,) = {(c["S3Bucket"], c["S3Key"]) for c in code.values()}
    head = clients("s3").head_object(Bucket=location[0], Key=location[1])
    assert head["ContentLength"] > 1_000_000  # the zip with its dependencies


def test_the_stack_deploys_to_moto_with_every_function_table_queue_and_mapping(
    deployed: tuple[RecordingClients, dict[str, str], set[str], dict[str, Any]],
) -> None:
    clients, outputs, _, expanded = deployed
    stack = clients("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    resources = clients("cloudformation").list_stack_resources(StackName=STACK)[
        "StackResourceSummaries"
    ]
    assert all(r["ResourceStatus"].endswith("_COMPLETE") for r in resources)
    functions = clients("lambda").list_functions()["Functions"]
    assert len(functions) == len(FUNCTIONS)
    # One role per function.
    assert len({f["Role"] for f in functions}) == len(FUNCTIONS)
    tables = clients("dynamodb").list_tables()["TableNames"]
    assert sorted(tables) == sorted(
        f"{STACK}-{short}"
        for short in (
            "registry",
            "ledger",
            "credits",
            "receipts",
            "disputes",
            "analytics",
            "connections",
        )
    )
    queues = clients("sqs").list_queues()["QueueUrls"]
    assert {u.rsplit("/", 1)[1] for u in queues} == {
        f"{STACK}-ingest-dlq",
        f"{STACK}-stream-failures",
    }
    mappings = clients("lambda").list_event_source_mappings()["EventSourceMappings"]
    assert len(mappings) == 3
    failures_arn = f"arn:aws:sqs:{REGION}:123456789012:{STACK}-stream-failures"
    # As infra/template.yaml configures them (test_infra.py checks the figures).
    configured = {
        (r["Properties"]["MaximumRetryAttempts"], r["Properties"]["MaximumRecordAgeInSeconds"])
        for r in expanded["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    for mapping in mappings:
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BisectBatchOnFunctionError"] is True
        limits = (mapping["MaximumRetryAttempts"], mapping["MaximumRecordAgeInSeconds"])
        assert limits in configured
        assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == failures_arn
    for key in ("EndpointURL", "DashboardBucketName", "AlarmTopicArn", "StreamFailuresQueueUrl"):
        assert outputs[key], key
    assert outputs["ReceiptSigningKeyParameterName"] == deploy.signing_key_parameter(STACK)


def test_a_new_stack_is_created_unprotected_then_its_tables_are_protected(
    deployed: tuple[RecordingClients, dict[str, str], set[str], dict[str, Any]],
) -> None:
    clients, _, _, _ = deployed

    def protection(calls: list[dict[str, Any]]) -> list[str]:
        return [
            p["ParameterValue"]
            for call in calls
            for p in call["Parameters"]
            if p["ParameterKey"] == "TableDeletionProtection"
        ]

    assert protection(clients.creates) == ["false"]
    assert protection(clients.updates) == ["true"]
    assert all(
        set(c["Capabilities"]) >= {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}
        for c in clients.creates
    )
    stack = clients("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]
    # (moto does not carry a changed DeletionProtectionEnabled to the table itself.)
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert parameters["TableDeletionProtection"] == "true"


class StubbedClients(deploy.Clients):
    """Clients whose CloudFormation answers from a botocore Stubber (moto does not
    model a create that fails and rolls back)."""

    def __init__(self, cloudformation: Any) -> None:
        super().__init__(session=None)
        self._cloudformation = cloudformation

    def __call__(self, service: str) -> Any:
        assert service == "cloudformation", service
        return self._cloudformation


def test_a_stack_left_by_a_failed_first_create_is_deleted_and_created_again(
    aws_credentials: None,
) -> None:
    from botocore.stub import Stubber

    cloudformation = boto3.client("cloudformation", region_name=REGION)
    stub = Stubber(cloudformation)

    def status(value: str, **extra: Any) -> dict[str, Any]:
        stack = {
            "StackName": STACK,
            "StackStatus": value,
            "CreationTime": "2026-12-01T00:00:00Z",
            **extra,
        }
        return {"Stacks": [stack]}

    gone = {"service_error_code": "ValidationError", "service_message": "Stack does not exist"}
    stub.add_response("describe_stacks", status("ROLLBACK_COMPLETE"), {"StackName": STACK})
    stub.add_response("delete_stack", {}, {"StackName": STACK})
    stub.add_client_error("describe_stacks", **gone)  # the delete waiter: gone
    stub.add_response("create_stack", {"StackId": "id"})
    stub.add_response("describe_stacks", status("CREATE_COMPLETE"))
    stub.add_response("update_stack", {"StackId": "id"})
    stub.add_response("describe_stacks", status("UPDATE_COMPLETE"))
    outputs = [{"OutputKey": "EndpointURL", "OutputValue": "https://x/api/"}]
    stub.add_response("describe_stacks", status("UPDATE_COMPLETE", Outputs=outputs))

    with stub:
        found = deploy.deploy_stack(
            StubbedClients(cloudformation),
            STACK,
            "https://bucket.s3.amazonaws.com/t.yaml",
            lambda protect: deploy.stack_parameters(
                "m", OPERATOR_KEY, OPERATOR_KEY, "ops@example.com", protect_tables=protect
            ),
        )
    stub.assert_no_pending_responses()
    assert found == {"EndpointURL": "https://x/api/"}


def test_every_function_has_its_reserved_concurrency_and_a_log_group_with_retention(
    deployed: tuple[RecordingClients, dict[str, str], set[str], dict[str, Any]],
) -> None:
    clients, _, _, _ = deployed
    lam = clients("lambda")
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    reserved = {n: lam.get_function_concurrency(FunctionName=n) for n in names}
    assert all(r.get("ReservedConcurrentExecutions", 0) >= 1 for r in reserved.values()), reserved
    groups = {
        g["logGroupName"]: g.get("retentionInDays")
        for g in clients("logs").describe_log_groups()["logGroups"]
    }
    for name in names:
        assert groups.get(f"/aws/lambda/{name}") == 30, name


def _resolver(clients: deploy.Clients, gone: set[str]) -> Any:
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in clients("cloudformation").list_stack_resources(StackName=STACK)[
            "StackResourceSummaries"
        ]
    }

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            return _stand_in(node["Ref"]) if node["Ref"] in gone else physical[node["Ref"]]
        if set(node) == {"Fn::GetAtt"}:
            logical_id, attribute = node["Fn::GetAtt"]
            assert attribute == "QueueName", node  # the only attribute alarms use
            return physical[logical_id].rsplit("/", 1)[1]
        if set(node) == {"Fn::Sub"}:
            return node["Fn::Sub"].replace("${AWS::StackName}", STACK)
        return {key: resolve(value) for key, value in node.items()}

    return resolve


def test_every_alarm_is_accepted_by_cloudwatch_and_notifies_the_topic(
    deployed: tuple[RecordingClients, dict[str, str], set[str], dict[str, Any]],
) -> None:
    clients, outputs, gone, expanded = deployed
    resolve = _resolver(clients, gone)
    cloudwatch = clients("cloudwatch")
    alarms = {
        logical_id: resolve(resource["Properties"])
        for logical_id, resource in expanded["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    for logical_id, properties in alarms.items():
        cloudwatch.put_metric_alarm(AlarmName=f"{STACK}-{logical_id}", **properties)

    described = cloudwatch.describe_alarms()["MetricAlarms"]
    assert len(described) == len(alarms) >= 2 * len(FUNCTIONS) + 3
    for alarm in described:
        assert alarm["AlarmActions"] == [outputs["AlarmTopicArn"]], alarm["AlarmName"]
        assert len(alarm["AlarmDescription"]) > 60, alarm["AlarmName"]
    topic = clients("sns").list_subscriptions_by_topic(TopicArn=outputs["AlarmTopicArn"])
    assert [(s["Protocol"], s["Endpoint"]) for s in topic["Subscriptions"]] == [
        ("email", "ops@example.com")
    ]


# --- the smoke call -----------------------------------------------------------------------------


@pytest.fixture
def api_over_http(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """app.py's route behind a real HTTP server, configured as the stack configures the API.

    The signing key's parameter is named but does not exist: an API that read it
    to publish the public key would fail.
    """
    from app import app
    from chalicelib.adapters.aws import dynamodb_client
    from chalicelib.config import get_settings
    from chalicelib.wiring import dispatcher

    receipt_key = SigningKey(bytes(range(32, 64))).verify_key.encode().hex()
    monkeypatch.setenv("MARKETPLACE_ID", STACK)
    monkeypatch.setenv("OPERATOR_PUBLIC_KEY", OPERATOR_KEY)
    monkeypatch.setenv("RECEIPT_PUBLIC_KEY", receipt_key)
    monkeypatch.setenv("RECEIPT_SIGNING_KEY_PARAMETER", deploy.signing_key_parameter(STACK))
    caches = (get_settings, dispatcher, dynamodb_client)
    for cache in caches:
        cache.cache_clear()
    lock = threading.Lock()

    with Client(app) as chalice_client:

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    answer = chalice_client.http.post(
                        "/rpc", headers={"Content-Type": "application/json"}, body=body
                    )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/rpc", receipt_key
        finally:
            server.shutdown()
            server.server_close()
    for cache in caches:
        cache.cache_clear()


def test_the_smoke_call_finds_the_deployed_settings_without_the_private_key(
    api_over_http: tuple[str, str],
) -> None:
    url, receipt_key = api_over_http

    info = deploy.smoke_call(url)

    assert info["receipt_public_key"] == receipt_key
    deploy.check_market_info(info, STACK, OPERATOR_KEY, receipt_key)
    with pytest.raises(deploy.DeployError, match="receipt_public_key"):
        deploy.check_market_info(info, STACK, OPERATOR_KEY, "0" * 64)


def test_a_smoke_call_that_gets_no_answer_stops_the_deploy() -> None:
    with pytest.raises(deploy.DeployError, match=r"smoke call to http://127\.0\.0\.1:9/rpc failed"):
        deploy.smoke_call("http://127.0.0.1:9/rpc", timeout=5)


# --- the receipt key at run time ---------------------------------------------------------------


def test_a_signer_loads_the_key_the_deploy_made_and_matches_the_published_one(
    clients: deploy.Clients,
) -> None:
    from chalicelib.adapters.receipt_key import _from_parameter, receipt_signing_key
    from chalicelib.config import Settings

    public_key = deploy.ensure_signing_key(clients, STACK)
    name = deploy.signing_key_parameter(STACK)
    _from_parameter.cache_clear()
    try:
        settings = Settings(receipt_signing_key_parameter=name, receipt_public_key=public_key)
        key = receipt_signing_key(settings)
    finally:
        _from_parameter.cache_clear()

    assert key.verify_key.encode().hex() == public_key


def test_a_signer_refuses_a_key_that_is_not_the_published_one() -> None:
    from chalicelib.adapters.receipt_key import (
        ReceiptKeyUnavailable,
        receipt_public_key,
        receipt_signing_key,
    )
    from chalicelib.config import Settings

    seed = bytes(range(64, 96)).hex()
    other = SigningKey(bytes(range(96, 128))).verify_key.encode().hex()
    settings = Settings(receipt_signing_key=SecretStr(seed), receipt_public_key=other)

    with pytest.raises(ReceiptKeyUnavailable, match="does not match RECEIPT_PUBLIC_KEY"):
        receipt_signing_key(settings)
    # What is published is the configured public key, whatever the seed.
    assert receipt_public_key(settings) == other
    assert receipt_public_key(Settings(receipt_signing_key=SecretStr(seed))) == (
        SigningKey(bytes.fromhex(seed)).verify_key.encode().hex()
    )
    with pytest.raises(ValueError, match="receipt_public_key"):
        Settings(receipt_public_key="ABC")
