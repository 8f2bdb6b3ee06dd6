"""The infra template: tables built from it offline, the deployable stack, and the local stack."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from websockets.sync.client import connect as ws_connect

from chalicelib.domain import readings
from infra.emulation import (
    OFFLINE_ACCOUNT_ID,
    create_iot_resources,
    create_queues,
    create_tables,
    dead_letter_queue,
    ingest_topic_rule,
    load_template,
    meter_policy_document,
    table_definitions,
    table_environment,
    table_logical_ids,
)
from infra.local_stack import (
    LocalStack,
    LocalStackError,
    PortInUseError,
    free_port,
    load_or_create_operator_key,
)
from infra.moto_server import LocalMotoServer
from iot.broker import meter_write_pattern, readings_topic_filter
from tests.support import buy, dynamodb_market, selling_provider, tables_from_environment

PROJECT_DIR = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TEST_STACK_NAME = "energy-marketplace-test"

# The contract with the application code: env var -> (logical id, short name, index names).
# Key attributes are deliberately not repeated here: the template is their only home.
TABLE_CONTRACT: dict[str, tuple[str, str, set[str]]] = {
    "REGISTRY_TABLE": (
        "RegistryTable",
        "registry",
        {"ProvidersByEnergyType", "ProvidersByJurisdiction", "ProvidersByOwner"},
    ),
    "LEDGER_TABLE": (
        "LedgerTable",
        "ledger",
        {"EntriesByAccount", "PurchasesDue", "PurchasesByBuyer"},
    ),
    "CREDITS_TABLE": (
        "CreditsTable",
        "credits",
        {"CreditsByProvider", "AvailableByProvider", "ExpiringBySlot", "HoldingsByOwner"},
    ),
    "RECEIPTS_TABLE": ("ReceiptsTable", "receipts", {"ReceiptsByBuyer"}),
    "DISPUTES_TABLE": (
        "DisputesTable",
        "disputes",
        {"DisputesByProvider", "OpenDisputesBySlot", "DisputesByStatus", "DisputesByMember"},
    ),
    "ANALYTICS_TABLE": (
        "AnalyticsTable",
        "analytics",
        {"SellersByDay24h", "SellersByDay7d", "SellersAllTime"},
    ),
    "CONNECTIONS_TABLE": ("ConnectionsTable", "connections", {"SubscribersByTopic"}),
}
# Tables of what lasts: retained, recoverable, streamed. The connections table
# holds live WebSocket connections only: every item expires within hours.
EPHEMERAL_TABLES = {"CONNECTIONS_TABLE"}
DURABLE_TABLES = sorted(set(TABLE_CONTRACT) - EPHEMERAL_TABLES)

# cfn-lint rules ignored on the packaged template. None today: the Chalice output
# plus infra/template.yaml lints clean with cfn-lint 1.58.0 (errors and warnings are
# checked; it is also clean under `--include-checks I`, which is advisory only).
IGNORED_CFN_LINT_RULES: list[str] = []


# --- the template itself -----------------------------------------------------------------


def test_template_maps_each_table_variable_to_its_table() -> None:
    assert table_logical_ids() == {
        variable: logical_id for variable, (logical_id, _, _) in TABLE_CONTRACT.items()
    }


def test_table_names_are_the_stack_name_and_the_short_name() -> None:
    assert table_environment("stack-x") == {
        variable: f"stack-x-{short}" for variable, (_, short, _) in TABLE_CONTRACT.items()
    }


@pytest.mark.parametrize("variable", DURABLE_TABLES)
def test_every_table_is_durable_and_streams_both_images(variable: str) -> None:
    logical_id, short_name, _ = TABLE_CONTRACT[variable]
    resource = load_template()["Resources"][logical_id]
    properties = resource["Properties"]

    assert properties["TableName"] == {"Fn::Sub": f"${{AWS::StackName}}-{short_name}"}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["DeletionProtectionEnabled"] == {"Ref": "TableDeletionProtection"}
    # Kept when the stack is deleted; removed when its first create fails.
    assert resource["DeletionPolicy"] == "RetainExceptOnCreate"
    assert resource["UpdateReplacePolicy"] == "Retain"


# Balances, escrow, credits and receipts: no item of theirs may ever expire by TTL.
FINANCIAL_TABLES = ["LEDGER_TABLE", "CREDITS_TABLE", "RECEIPTS_TABLE"]
# Where items do expire: nonces and meter refusals (registry), detector memory
# (disputes), live connections. The analytics table keeps its TTL for the same use.
TTL_TABLES = sorted(set(TABLE_CONTRACT) - set(FINANCIAL_TABLES))


@pytest.mark.parametrize("variable", FINANCIAL_TABLES)
def test_financial_tables_have_no_time_to_live(variable: str) -> None:
    properties = load_template()["Resources"][TABLE_CONTRACT[variable][0]]["Properties"]
    assert "TimeToLiveSpecification" not in properties


@pytest.mark.parametrize("variable", TTL_TABLES)
def test_the_other_tables_expire_items_by_expires_at(variable: str) -> None:
    properties = load_template()["Resources"][TABLE_CONTRACT[variable][0]]["Properties"]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_no_financial_item_carries_the_ttl_attribute(dynamodb: Any) -> None:
    """A full trade (registration, minted readings, purchase, settlement, receipt) and a
    signed request's nonce: no item of the financial tables has expires_at, while the
    nonce (registry) does, so the check can see the attribute where it is."""
    market = dynamodb_market(dynamodb, tables_from_environment(dict(os.environ)))
    meter = selling_provider(market, [2_500, 2_500, 2_500])
    bob = market.funded_account("bob.theblock", block=100)
    purchase = buy(market, bob, meter.provider_id, "3")
    market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, bob)

    def items(variable: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=os.environ[variable]):
            found.extend(page["Items"])
        return found

    for variable in FINANCIAL_TABLES:
        stored = items(variable)
        assert stored, variable
        assert not [i for i in stored if "expires_at" in i], variable
    assert [i for i in items("REGISTRY_TABLE") if "expires_at" in i]


# Resources with a fixed physical name: one retained after a failed first create
# would block the next create under that name.
NAME_PROPERTIES = ("TableName", "QueueName", "ThingTypeName", "PolicyName", "TopicName")


def test_no_named_resource_outlives_a_failed_first_create() -> None:
    for logical_id, resource in load_template()["Resources"].items():
        properties = resource.get("Properties", {})
        if resource.get("Type", "").startswith("AWS::") and any(
            name in properties for name in NAME_PROPERTIES
        ):
            assert resource.get("DeletionPolicy", "Delete") in {
                "Delete",
                "RetainExceptOnCreate",
            }, logical_id
    # Nothing in the stack is plainly retained.
    assert not [
        logical_id
        for logical_id, resource in load_template()["Resources"].items()
        if resource.get("DeletionPolicy") == "Retain"
    ]


@pytest.mark.parametrize("variable", sorted(TABLE_CONTRACT))
def test_every_key_attribute_is_a_declared_string_and_every_declared_one_is_a_key(
    variable: str,
) -> None:
    properties = load_template()["Resources"][TABLE_CONTRACT[variable][0]]["Properties"]
    declared = {
        item["AttributeName"]: item["AttributeType"] for item in properties["AttributeDefinitions"]
    }
    key_schemas = [properties["KeySchema"]] + [
        index["KeySchema"] for index in properties["GlobalSecondaryIndexes"]
    ]
    used = {element["AttributeName"] for schema in key_schemas for element in schema}

    assert [e["AttributeName"] for e in properties["KeySchema"]] == ["pk", "sk"]
    assert set(declared) == used  # DynamoDB refuses definitions no key uses
    assert set(declared.values()) == {"S"}
    for index in properties["GlobalSecondaryIndexes"]:
        assert [e["KeyType"] for e in index["KeySchema"]] == ["HASH", "RANGE"]
        if index["IndexName"] in KEYS_ONLY_INDEXES:
            assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
        elif index["IndexName"] not in PROVIDER_INDEXES:
            assert index["Projection"] == {"ProjectionType": "ALL"}


# Membership items point at disputes, which are then read by key: the index
# needs their keys only.
KEYS_ONLY_INDEXES = {"DisputesByMember", "SubscribersByTopic"}


# The registry's provider indexes carry what listings filter on and nothing that
# ingestion writes on every reading, so a reading costs no index write.
PROVIDER_INDEXES = {"ProvidersByEnergyType", "ProvidersByJurisdiction", "ProvidersByOwner"}
LISTING_FACTS = {"energy_type", "jurisdiction", "price_key", "capacity_wh", "status", "provider_id"}
INGEST_COUNTERS = {"available_wh", "reading_slot_last", "reading_slot_bits"}


def test_provider_indexes_hold_the_listing_facts_and_no_ingest_counter() -> None:
    properties = load_template()["Resources"]["RegistryTable"]["Properties"]
    indexes = {i["IndexName"]: i for i in properties["GlobalSecondaryIndexes"]}
    assert set(indexes) == PROVIDER_INDEXES
    for name in ("ProvidersByEnergyType", "ProvidersByJurisdiction"):
        projection = indexes[name]["Projection"]
        carried = set(projection["NonKeyAttributes"]) | {
            k["AttributeName"] for k in indexes[name]["KeySchema"]
        }
        assert projection["ProjectionType"] == "INCLUDE"
        assert carried >= LISTING_FACTS
        assert not carried & INGEST_COUNTERS
    assert indexes["ProvidersByOwner"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}


# --- the IoT resources and the dead-letter queue -------------------------------------------

# The event the ingest function receives (the contract with app.ingest_reading).
RULE_EVENT_FIELDS = {
    "payload": "encode(*, 'base64')",
    "topic_meter_address": "topic(3)",
    "client_id": "clientid()",
    "received_at_ms": "timestamp()",
}
THING_NAME_VARIABLE = "${iot:Connection.Thing.ThingName}"


def test_topic_rule_selects_every_meters_readings_and_builds_the_ingest_event() -> None:
    rule = ingest_topic_rule()

    assert rule.topic_filter == readings.topic_for("+") == readings_topic_filter()
    assert rule.sql_version == "2016-03-23"
    assert rule.function_logical_id == "IngestReading"
    select = rule.sql.split(" FROM ")[0].removeprefix("SELECT ")
    fields = {
        name: expression for expression, name in re.findall(r"(.+?) AS (\w+)(?:, |$)", select)
    }
    assert fields == RULE_EVENT_FIELDS
    # topic(3) is the meter address: energy(1)/meters(2)/<meter>(3)/readings(4).
    assert readings.topic_for("solar_meter_001").split("/")[2] == "solar_meter_001"


def test_topic_rule_sends_what_it_cannot_deliver_to_the_dead_letter_queue() -> None:
    resources = load_template()["Resources"]
    payload = resources["IngestTopicRule"]["Properties"]["TopicRulePayload"]
    error_action = payload["ErrorAction"]["Sqs"]
    assert error_action["QueueUrl"] == {"Ref": "IngestDeadLetterQueue"}
    role = resources[error_action["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "iot.amazonaws.com"
    }
    granted = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert granted == [
        {
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]},
        }
    ]
    # IoT invokes Lambda asynchronously: a function that raises is dead-lettered by
    # the function's own on-failure destination, into the same queue.
    invoke_config = resources["IngestEventInvokeConfig"]["Properties"]
    assert invoke_config["FunctionName"] == {"Ref": "IngestReading"}
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]
    }
    assert invoke_config["MaximumEventAgeInSeconds"] * 1000 == readings.DEFAULT_MAX_AGE_MS


def test_meter_policy_allows_connecting_as_its_own_thing_and_publishing_its_own_readings() -> None:
    document = meter_policy_document("stack-x", "eu-west-1", "111122223333")
    statements = document["Statement"]

    assert all(statement["Effect"] == "Allow" for statement in statements)
    assert sorted(statement["Action"] for statement in statements) == [
        "iot:Connect",
        "iot:Publish",
    ]
    by_action = {statement["Action"]: statement for statement in statements}
    arn = "arn:aws:iot:eu-west-1:111122223333"
    assert by_action["iot:Connect"]["Resource"] == [f"{arn}:client/{THING_NAME_VARIABLE}"]
    assert by_action["iot:Connect"]["Condition"] == {
        "Bool": {"iot:Connection.Thing.IsAttached": "true"}
    }
    assert by_action["iot:Publish"]["Resource"] == [
        f"{arn}:topic/{readings.topic_for(THING_NAME_VARIABLE)}"
    ]


def test_the_local_broker_acl_enforces_the_policys_topic() -> None:
    # The policy's topic with the thing name is the ACL's pattern with the username.
    assert meter_write_pattern().replace("%u", THING_NAME_VARIABLE) == readings.topic_for(
        THING_NAME_VARIABLE
    )


def test_iot_resources_and_queue_build_in_moto(aws_credentials: None, moto_server: str) -> None:
    iot = boto3.client("iot", endpoint_url=moto_server, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")

    names = create_iot_resources(iot, "test-iot", "us-east-1", OFFLINE_ACCOUNT_ID)
    assert create_iot_resources(iot, "test-iot", "us-east-1", OFFLINE_ACCOUNT_ID) == names
    queues = create_queues(sqs, "test-iot")

    assert names == {"thing_type": "test-iot-meter", "policy": "test-iot-meter"}
    thing_type = iot.describe_thing_type(thingTypeName="test-iot-meter")
    assert thing_type["thingTypeProperties"]["searchableAttributes"] == ["provider_id"]
    policy = json.loads(iot.get_policy(policyName="test-iot-meter")["policyDocument"])
    assert policy == meter_policy_document("test-iot", "us-east-1", OFFLINE_ACCOUNT_ID)
    queue_url = queues["IngestDeadLetterQueue"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    assert attributes["Attributes"]["MessageRetentionPeriod"] == "1209600"
    assert queue_url.endswith("/" + dead_letter_queue("test-iot")["QueueName"])
    iot.delete_policy(policyName="test-iot-meter")
    iot.delete_thing_type(thingTypeName="test-iot-meter")
    sqs.delete_queue(QueueUrl=queue_url)


# --- the offline tables ------------------------------------------------------------------


@pytest.mark.parametrize("variable", sorted(TABLE_CONTRACT))
def test_offline_table_has_its_indexes_stream_and_ttl(dynamodb: Any, variable: str) -> None:
    table_name = os.environ[variable]
    _, short_name, index_names = TABLE_CONTRACT[variable]
    assert table_name == f"{TEST_STACK_NAME}-{short_name}"

    table = dynamodb.describe_table(TableName=table_name)["Table"]
    assert {index["IndexName"] for index in table["GlobalSecondaryIndexes"]} == index_names
    if variable not in EPHEMERAL_TABLES:
        assert table["StreamSpecification"] == {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        assert table["LatestStreamArn"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = dynamodb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    if variable in FINANCIAL_TABLES:
        assert ttl == {"TimeToLiveStatus": "DISABLED"}
    else:
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


@pytest.mark.parametrize("variable", sorted(TABLE_CONTRACT))
def test_offline_table_keys_are_the_template_keys(dynamodb: Any, variable: str) -> None:
    definition = table_definitions(TEST_STACK_NAME)[variable]
    table = dynamodb.describe_table(TableName=os.environ[variable])["Table"]

    assert table["KeySchema"] == definition["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        definition["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    assert {i["IndexName"]: i["KeySchema"] for i in table["GlobalSecondaryIndexes"]} == {
        i["IndexName"]: i["KeySchema"] for i in definition["GlobalSecondaryIndexes"]
    }


def test_tables_build_in_a_moto_server_too(aws_credentials: None, moto_server: str) -> None:
    client = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    created = create_tables(client, "test-moto-server")

    assert created == table_environment("test-moto-server")
    assert set(created.values()) <= set(client.list_tables()["TableNames"])
    for table_name in created.values():
        client.delete_table(TableName=table_name)


# --- the deployable stack ----------------------------------------------------------------


def _subprocess_environment() -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE"))
    }
    environment.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    return environment


@pytest.fixture(scope="module")
def packaged_template_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`chalice package --merge-template infra/template.yaml --stage dev` of this project.

    Chalice downloads Linux wheels for requirements.txt from the package index the
    first time and caches the result in .chalice/deployments/ (keyed by the
    requirements), so later runs take a few seconds.
    """
    output_dir = tmp_path_factory.mktemp("package") / "out"
    result = subprocess.run(
        [
            str(VENV_BIN / "chalice"),
            "--project-dir",
            str(PROJECT_DIR),
            "package",
            "--merge-template",
            str(PROJECT_DIR / "infra" / "template.yaml"),
            "--stage",
            "dev",
            str(output_dir),
        ],
        cwd=PROJECT_DIR,
        env=_subprocess_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"chalice package failed:\n{result.stdout}\n{result.stderr}"
    # A YAML merge template makes chalice write YAML.
    path = output_dir / "sam.yaml"
    assert path.exists(), f"no sam.yaml in {sorted(p.name for p in output_dir.iterdir())}"
    assert (output_dir / "deployment.zip").exists()
    return path


@pytest.fixture(scope="module")
def packaged_template(packaged_template_path: Path) -> dict[str, Any]:
    with packaged_template_path.open(encoding="utf-8") as template_file:
        template: dict[str, Any] = yaml.safe_load(template_file)
    return template


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def _effective_environment(template: dict[str, Any], function: dict[str, Any]) -> dict[str, Any]:
    """A function's variables as SAM sees them: Globals, overridden by the function's own."""
    global_variables = (
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    own_variables = function["Properties"].get("Environment", {}).get("Variables", {})
    return {**global_variables, **own_variables}


def test_packaged_stack_passes_cfn_lint(packaged_template_path: Path) -> None:
    command = [str(VENV_BIN / "cfn-lint")]
    if IGNORED_CFN_LINT_RULES:
        command += ["--ignore-checks", *IGNORED_CFN_LINT_RULES]
    result = subprocess.run(
        [*command, "--", str(packaged_template_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"cfn-lint found problems:\n{result.stdout}\n{result.stderr}"


# What the zip must hold: the service, and the packages it needs that the
# python3.11 Lambda runtime does not provide (it provides boto3 and botocore).
SERVICE_IN_THE_ZIP = (
    "app.py",
    "chalicelib/wiring.py",
    "chalicelib/domain/signing.py",
    "chalicelib/domain/data/carbon_factors.json",  # read by the carbon figures
)
RUNTIME_PACKAGES = ("pydantic", "pydantic_core", "pydantic_settings", "nacl", "simplejson")
# What it must not: clients, tools, tests, and the SDK the runtime already has.
NOT_IN_THE_ZIP = (
    "energy_client",
    "tests",
    "bench",
    "iot",
    "infra",
    "docs",
    "web",
    "chalicelib/cli",
    "chalicelib/client.py",
    "boto3",
    "botocore",
    "s3transfer",
)


def test_the_lambda_zip_holds_the_service_and_its_dependencies_only(
    packaged_template_path: Path,
) -> None:
    with zipfile.ZipFile(packaged_template_path.parent / "deployment.zip") as package:
        names = package.namelist()
    top_level = {name.split("/")[0] for name in names}

    for path in SERVICE_IN_THE_ZIP:
        assert path in names, path
    for package_name in RUNTIME_PACKAGES:
        assert f"{package_name}/__init__.py" in names, package_name
    unwanted = sorted(
        name
        for name in names
        for excluded in NOT_IN_THE_ZIP
        if name == excluded or name.startswith(f"{excluded}/")
    )
    assert not unwanted, unwanted[:20]
    assert not any(name.startswith(("boto3-", "botocore-")) for name in top_level), top_level


def test_packaged_stack_has_the_api_handler_and_the_tables(
    packaged_template: dict[str, Any],
) -> None:
    resources = packaged_template["Resources"]
    assert resources["APIHandler"]["Type"] == "AWS::Serverless::Function"
    for logical_id, _, _ in TABLE_CONTRACT.values():
        assert resources[logical_id]["Type"] == "AWS::DynamoDB::Table"


def test_every_packaged_function_finds_every_table(packaged_template: dict[str, Any]) -> None:
    functions = _functions(packaged_template)
    assert "APIHandler" in functions
    for logical_id, function in functions.items():
        variables = _effective_environment(packaged_template, function)
        for variable, (table_id, _, _) in TABLE_CONTRACT.items():
            assert variables.get(variable) == {"Ref": table_id}, (logical_id, variable)
        assert variables.get("MARKETPLACE_ID") == {"Ref": "MarketplaceId"}, logical_id
        assert variables.get("OPERATOR_PUBLIC_KEY") == {"Ref": "OperatorPublicKey"}, logical_id
        assert variables.get("RECEIPT_PUBLIC_KEY") == {"Ref": "ReceiptPublicKey"}, logical_id


def test_packaged_stack_has_the_ingest_function_as_the_topic_rules_target(
    packaged_template: dict[str, Any],
) -> None:
    resources = packaged_template["Resources"]
    ingest = resources["IngestReading"]
    assert ingest["Type"] == "AWS::Serverless::Function"
    assert ingest["Properties"]["Handler"] == "app.ingest_reading"
    rule = resources["IngestTopicRule"]
    assert rule["Type"] == "AWS::IoT::TopicRule"
    assert rule["Properties"]["TopicRulePayload"]["Actions"] == [
        {"Lambda": {"FunctionArn": {"Fn::GetAtt": ["IngestReading", "Arn"]}}}
    ]
    permission = resources["IngestInvokePermission"]["Properties"]
    assert permission["Principal"] == "iot.amazonaws.com"
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["FunctionName"] == {"Fn::GetAtt": ["IngestReading", "Arn"]}
    assert permission["SourceArn"] == {"Fn::GetAtt": ["IngestTopicRule", "Arn"]}
    for logical_id, resource_type in {
        "MeterThingType": "AWS::IoT::ThingType",
        "MeterPolicy": "AWS::IoT::Policy",
        "IngestDeadLetterQueue": "AWS::SQS::Queue",
        "IngestTopicRuleErrorRole": "AWS::IAM::Role",
        "IngestEventInvokeConfig": "AWS::Lambda::EventInvokeConfig",
    }.items():
        assert resources[logical_id]["Type"] == resource_type, logical_id


def test_the_ingest_function_may_write_to_the_dead_letter_queue(
    packaged_template: dict[str, Any],
) -> None:
    resources = packaged_template["Resources"]
    assert resources["IngestReading"]["Properties"]["Role"] == {
        "Fn::GetAtt": ["IngestReadingRole", "Arn"]
    }
    # In the role itself: it exists before the function and its invoke config.
    assert _role_grants(packaged_template, "IngestReading")["IngestDeadLetters"] == {
        "Sid": "IngestDeadLetters",
        "Effect": "Allow",
        "Action": "sqs:SendMessage",
        "Resource": {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]},
    }
    assert "DependsOn" not in resources["IngestEventInvokeConfig"]


def test_operator_key_is_a_parameter_without_default(packaged_template: dict[str, Any]) -> None:
    parameters = packaged_template["Parameters"]
    assert "Default" not in parameters["OperatorPublicKey"]
    assert parameters["MarketplaceId"]["Default"] == "energy-marketplace"


# Each function's tables (W: read and write, R: read only), from its code paths
# (chalicelib/wiring.py and the services each handler calls); docs/deploy.md
# has the same table, and test_deploy_roles.py runs every function to check
# that these are enough.
ROLE_TABLES: dict[str, tuple[set[str], set[str]]] = {
    "APIHandler": (
        {"RegistryTable", "LedgerTable", "CreditsTable", "ReceiptsTable", "DisputesTable"},
        {"AnalyticsTable"},
    ),
    "IngestReading": ({"RegistryTable", "CreditsTable"}, set()),
    "SettleDuePurchases": (
        {"RegistryTable", "LedgerTable", "CreditsTable", "ReceiptsTable"},
        set(),
    ),
    "ExpireUnsoldCredits": ({"RegistryTable", "CreditsTable"}, set()),
    "ResolveDueDisputes": (
        {"RegistryTable", "LedgerTable", "CreditsTable", "ReceiptsTable", "DisputesTable"},
        set(),
    ),
    "PushMarketStats": ({"ConnectionsTable"}, {"AnalyticsTable", "DisputesTable"}),
    "PublishMarketEvents": ({"AnalyticsTable", "ConnectionsTable"}, set()),
    "WatchMeters": (
        {"RegistryTable", "DisputesTable", "AnalyticsTable", "ConnectionsTable"},
        {"CreditsTable"},
    ),
    "PublishDisputeEvents": ({"ConnectionsTable"}, set()),
    "WebsocketConnect": ({"ConnectionsTable"}, {"RegistryTable"}),
    "WebsocketMessage": ({"ConnectionsTable"}, {"RegistryTable"}),
    "WebsocketDisconnect": ({"ConnectionsTable"}, set()),
}
RECEIPT_SIGNERS = {"APIHandler", "SettleDuePurchases", "ResolveDueDisputes"}
STREAM_CONSUMERS = {
    "PublishMarketEvents": "LedgerTable",
    "WatchMeters": "RegistryTable",
    "PublishDisputeEvents": "DisputesTable",
}
PUSHERS = {
    "PushMarketStats",
    "PublishMarketEvents",
    "WatchMeters",
    "PublishDisputeEvents",
    "WebsocketMessage",
}
WRITE_ACTIONS = {
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
}


def _role_grants(template: dict[str, Any], function_id: str) -> dict[str, dict[str, Any]]:
    """The statements of a function's own role, by Sid."""
    role_id = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    (policy,) = template["Resources"][role_id]["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    by_sid = {statement["Sid"]: statement for statement in statements}
    assert len(by_sid) == len(statements), role_id
    return by_sid


def _tables_in(statement: dict[str, Any]) -> set[str]:
    tables = {r["Fn::GetAtt"][0] for r in statement["Resource"] if "Fn::GetAtt" in r}
    indexes = {r["Fn::Sub"].split(".")[0][2:] for r in statement["Resource"] if "Fn::Sub" in r}
    assert indexes == tables  # every table with its indexes, nothing else
    return tables


def test_every_function_has_its_own_role(packaged_template: dict[str, Any]) -> None:
    functions = _functions(packaged_template)
    roles = {f["Properties"]["Role"]["Fn::GetAtt"][0] for f in functions.values()}
    assert set(functions) == set(ROLE_TABLES)
    assert len(roles) == len(functions)
    assert "DefaultRole" not in packaged_template["Resources"]


@pytest.mark.parametrize("function_id", sorted(ROLE_TABLES))
def test_each_role_grants_only_its_functions_tables(
    packaged_template: dict[str, Any], function_id: str
) -> None:
    grants = _role_grants(packaged_template, function_id)
    writes, reads = ROLE_TABLES[function_id]

    assert _tables_in(grants["ReadWrite"]) == writes if writes else "ReadWrite" not in grants
    if reads:
        assert _tables_in(grants["ReadOnly"]) == reads
        assert not WRITE_ACTIONS & set(grants["ReadOnly"]["Action"])
    else:
        assert "ReadOnly" not in grants
    assert ("ReceiptSigningKey" in grants) == (function_id in RECEIPT_SIGNERS)
    assert ("PushToConnections" in grants) == (function_id in PUSHERS)
    assert ("ReadOwnStream" in grants) == (function_id in STREAM_CONSUMERS)
    # No Scan anywhere (docs/architecture.md), and no table by wildcard.
    for statement in grants.values():
        actions = statement["Action"] if isinstance(statement["Action"], list) else []
        assert "dynamodb:Scan" not in actions
    assert grants["Logs"]["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]


def test_the_signing_key_is_one_parameter_named_for_the_stack(
    packaged_template: dict[str, Any],
) -> None:
    name = "/energy-marketplace/${AWS::StackName}/receipt-signing-key"
    for function_id in RECEIPT_SIGNERS:
        grant = _role_grants(packaged_template, function_id)["ReceiptSigningKey"]
        assert grant["Action"] == "ssm:GetParameter"
        assert grant["Resource"]["Fn::Sub"].endswith(f":parameter{name}")
        variables = _effective_environment(
            packaged_template, packaged_template["Resources"][function_id]
        )
        assert variables["RECEIPT_SIGNING_KEY_PARAMETER"] == {"Fn::Sub": name}
    for function_id, function in _functions(packaged_template).items():
        variables = _effective_environment(packaged_template, function)
        assert variables["RECEIPT_PUBLIC_KEY"] == {"Ref": "ReceiptPublicKey"}, function_id
        if function_id not in RECEIPT_SIGNERS:
            assert "RECEIPT_SIGNING_KEY_PARAMETER" not in variables, function_id


def test_pushing_to_clients_is_allowed_on_this_stacks_websocket_api_only(
    packaged_template: dict[str, Any],
) -> None:
    for function_id in PUSHERS:
        grant = _role_grants(packaged_template, function_id)["PushToConnections"]
        assert grant["Action"] == "execute-api:ManageConnections"
        assert grant["Resource"]["Fn::Sub"].endswith(":${WebsocketAPI}/api/*/@connections/*")


@pytest.mark.parametrize("function_id", sorted(STREAM_CONSUMERS))
def test_each_stream_consumer_reads_its_stream_and_reports_failures(
    packaged_template: dict[str, Any], function_id: str
) -> None:
    table_id = STREAM_CONSUMERS[function_id]
    function = packaged_template["Resources"][function_id]
    (source,) = function["Properties"]["Events"].values()
    properties = source["Properties"]

    assert properties["Stream"] == {"Fn::GetAtt": [table_id, "StreamArn"]}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["BisectBatchOnFunctionError"] is True
    assert 0 < properties["MaximumRetryAttempts"] <= 10
    # Time left to replay a failed record from the stream (24 hours) after it is dropped.
    assert 60 <= properties["MaximumRecordAgeInSeconds"] <= 86_400 - 12 * 3600
    assert properties["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["StreamFailuresQueue", "Arn"]},
    }
    grants = _role_grants(packaged_template, function_id)
    assert grants["ReadOwnStream"]["Resource"] == {"Fn::GetAtt": [table_id, "StreamArn"]}
    assert grants["StreamFailures"]["Resource"] == {"Fn::GetAtt": ["StreamFailuresQueue", "Arn"]}


def test_every_function_has_reserved_concurrency_within_the_account_default(
    packaged_template: dict[str, Any],
) -> None:
    reserved = {
        function_id: function["Properties"]["ReservedConcurrentExecutions"]
        for function_id, function in _functions(packaged_template).items()
    }
    assert all(count >= 1 for count in reserved.values()), reserved
    # An account starts with 1,000 concurrent executions and Lambda keeps 100 unreserved.
    assert sum(reserved.values()) <= 900
    # A flood on the public API cannot take ingestion's or settlement's share.
    assert reserved["IngestReading"] >= reserved["APIHandler"]


def test_every_function_logs_to_a_group_with_retention(packaged_template: dict[str, Any]) -> None:
    resources = packaged_template["Resources"]
    groups = {
        r["Properties"]["LogGroupName"]["Fn::Sub"]: r["Properties"]["RetentionInDays"]
        for r in resources.values()
        if r["Type"] == "AWS::Logs::LogGroup" and "LogGroupName" in r["Properties"]
    }
    for function_id in _functions(packaged_template):
        assert groups.get(f"/aws/lambda/${{{function_id}}}") == 30, function_id


def test_the_apis_are_throttled_and_log_their_requests(packaged_template: dict[str, Any]) -> None:
    resources = packaged_template["Resources"]
    rest = resources["RestAPI"]["Properties"]
    (settings,) = rest["MethodSettings"]
    assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0
    assert rest["AccessLogSetting"]["DestinationArn"] == {
        "Fn::GetAtt": ["RestApiAccessLogs", "Arn"]
    }
    assert "$context.requestId" in rest["AccessLogSetting"]["Format"]
    websocket = resources["WebsocketAPIStage"]["Properties"]
    assert websocket["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    assert websocket["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": ["WebsocketAccessLogs", "Arn"]
    }
    # Access logs need the account's API Gateway role set first.
    assert resources["RestAPI"]["DependsOn"] == resources["WebsocketAPIStage"]["DependsOn"]
    assert resources["RestAPI"]["DependsOn"] == ["ApiGatewayAccount"]


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def _watched(alarm: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(namespace, metric, first dimension value as written) of an alarm's metrics."""
    stats = [alarm] + [
        m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m
    ]
    return {
        (
            stat["Namespace"],
            stat["MetricName"],
            json.dumps(stat.get("Dimensions", [{}])[0].get("Value"), sort_keys=True),
        )
        for stat in stats
        if "MetricName" in stat
    }


def test_every_alarm_describes_itself_and_notifies_the_topic(
    packaged_template: dict[str, Any],
) -> None:
    alarms = _alarms(packaged_template)
    topic = packaged_template["Resources"]["AlarmTopic"]["Properties"]
    assert topic["Subscription"] == [{"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}]
    for logical_id, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert len(alarm["AlarmDescription"]) > 60, logical_id


def test_the_alarms_watch_what_an_operator_must_know(packaged_template: dict[str, Any]) -> None:
    watched = set().union(*map(_watched, _alarms(packaged_template).values()))

    def ref(logical_id: str) -> str:
        return json.dumps({"Ref": logical_id})

    for function_id in _functions(packaged_template):
        assert ("AWS/Lambda", "Errors", ref(function_id)) in watched, function_id
        assert ("AWS/Lambda", "Throttles", ref(function_id)) in watched, function_id
    for function_id in STREAM_CONSUMERS:
        assert ("AWS/Lambda", "IteratorAge", ref(function_id)) in watched, function_id
    for function_id in ("SettleDuePurchases", "ExpireUnsoldCredits", "ResolveDueDisputes"):
        assert ("AWS/Lambda", "Invocations", ref(function_id)) in watched, function_id
    for queue_id in ("IngestDeadLetterQueue", "StreamFailuresQueue"):
        name = json.dumps({"Fn::GetAtt": [queue_id, "QueueName"]})
        assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", name) in watched, queue_id
    rest_api = packaged_template["Resources"]["RestAPI"]["Properties"]
    assert rest_api["Name"] == rest_api["DefinitionBody"]["info"]["title"]
    assert rest_api["DefinitionBody"]["paths"]  # Chalice's routes are still there
    api_name = json.dumps(rest_api["Name"])
    assert ("AWS/ApiGateway", "5XXError", api_name) in watched
    assert ("AWS/ApiGateway", "IntegrationError", ref("WebsocketAPI")) in watched
    assert ("AWS/DynamoDB", "WriteThrottleEvents", ref("ConnectionsTable")) in watched
    # The ingest function's embedded metrics, without dimensions (see the alarm).
    assert ("EnergyMarketplace", "ReadingsAccepted", "null") in watched
    assert ("EnergyMarketplace", "ReadingsRejected", "null") in watched
    # What the registry stream's reader counts when it writes a lost credit.
    assert ("EnergyMarketplace", "CreditsRestored", "null") in watched


def test_the_deployment_guide_lists_every_alarm_and_every_role(
    packaged_template: dict[str, Any],
) -> None:
    guide = (PROJECT_DIR / "docs" / "deploy.md").read_text(encoding="utf-8")
    functions = set(_functions(packaged_template))
    for logical_id in _alarms(packaged_template):
        per_function = re.fullmatch(r"(\w+?)(Errors|Throttles)Alarm", logical_id)
        if per_function and per_function.group(1) in functions:
            assert f"`<Function>{per_function.group(2)}Alarm`" in guide
        else:
            assert f"`{logical_id}`" in guide, logical_id
    short = {logical_id: short for logical_id, short, _ in TABLE_CONTRACT.values()}
    rows: dict[str, str] = {}
    for row in guide[guide.index("### Roles") :].splitlines():
        if row.startswith("| `") and row.count("|") == 4:
            rows.setdefault(row.split("|")[1].split()[0].strip("`"), row.split("|")[2])
    for function_id, (writes, reads) in ROLE_TABLES.items():
        tables = rows[function_id]
        assert {short[t] for t in writes | reads} == {
            name for name in short.values() if re.search(rf"\b{name}\b", tables)
        }, function_id


def test_the_job_failure_filters_read_what_the_jobs_log() -> None:
    """Each job's metric filter names the job as its run logs it, and reads the
    fields JobRun logs (`job_run` is a field of the job's JSON log line)."""
    from chalicelib.services.expiry import EXPIRY_JOB
    from chalicelib.services.ports import JobRun
    from chalicelib.services.resolution import DISPUTES_JOB
    from chalicelib.services.settlement import SETTLEMENT_JOB

    resources = load_template()["Resources"]
    jobs = {
        "SettleDuePurchases": SETTLEMENT_JOB,
        "ExpireUnsoldCredits": EXPIRY_JOB,
        "ResolveDueDisputes": DISPUTES_JOB,
    }
    logged = JobRun("any").as_log()
    for function_id, job in jobs.items():
        metric_filter = resources[f"{function_id}FailedItemsMetric"]["Properties"]
        assert metric_filter["LogGroupName"] == {"Ref": f"{function_id}LogGroup"}
        assert metric_filter["FilterPattern"] == (
            f'{{ $.job_run.job = "{job}" && $.job_run.failed > 0 }}'
        )
        (transformation,) = metric_filter["MetricTransformations"]
        fields = {transformation["MetricValue"]} | {
            d["Value"] for d in transformation["Dimensions"]
        }
        assert {f.removeprefix("$.job_run.") for f in fields} <= set(logged)
        alarm = resources[f"{function_id}FailedItemsAlarm"]["Properties"]
        assert alarm["MetricName"] == transformation["MetricName"] == "JobItemsFailed"
        assert alarm["Dimensions"] == [{"Name": "Job", "Value": job}]


def test_the_dashboard_is_private_behind_cloudfront_with_the_api_on_its_origin(
    packaged_template: dict[str, Any],
) -> None:
    resources = packaged_template["Resources"]
    bucket = resources["DashboardBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    (statement,) = resources["DashboardBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert statement["Action"] == "s3:GetObject"
    config = resources["DashboardDistribution"]["Properties"]["DistributionConfig"]
    origins = {origin["Id"]: origin for origin in config["Origins"]}
    assert origins["dashboard"]["OriginAccessControlId"] == {
        "Fn::GetAtt": ["DashboardOriginAccessControl", "Id"]
    }
    assert origins["api"]["DomainName"]["Fn::Sub"].startswith("${RestAPI}.execute-api.")
    assert origins["api"]["OriginPath"] == "/" + resources["RestAPI"]["Properties"]["StageName"]
    routes = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    assert set(routes) == {"/rpc", "/openrpc.json"}
    assert all(b["TargetOriginId"] == "api" for b in routes.values())
    assert "POST" in routes["/rpc"]["AllowedMethods"]
    assert config["DefaultCacheBehavior"]["TargetOriginId"] == "dashboard"
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["DefaultCacheBehavior"]["ResponseHeadersPolicyId"]
    assert packaged_template["Outputs"]["DashboardURL"]


# --- the local stack (`make run`) --------------------------------------------------------


def _post_rpc(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        url,
        data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with opener.open(request, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_operator_key_is_created_once_and_reused(tmp_path: Path) -> None:
    first_key, key_path = load_or_create_operator_key(tmp_path / "state")
    second_key, _ = load_or_create_operator_key(tmp_path / "state")

    assert bytes(first_key) == bytes(second_key)
    assert key_path.read_text().strip() == bytes(first_key).hex()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_an_operator_key_file_that_holds_no_seed_stops_the_stack(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "operator.key").write_text("not a seed\n", encoding="ascii")

    with pytest.raises(LocalStackError, match=r"operator\.key does not hold an Ed25519 seed"):
        load_or_create_operator_key(state_dir)


def test_local_stack_serves_the_api_against_moto_and_stops_cleanly(tmp_path: Path) -> None:
    log_path = tmp_path / "chalice.log"
    with (
        log_path.open("wb") as log,
        LocalStack(
            moto_port=0,
            api_port=free_port(),
            mqtt_port=0,
            state_dir=tmp_path / "state",
            chalice_output=log,
        ) as stack,
    ):
        groups = [
            stack.chalice_pid,
            stack.bridge_pid,
            stack.broker_pid,
            stack.scheduler_pid,
            stack.stream_poller_pid,
            stack.ws_gateway_pid,
            stack.web_server_pid,
        ]
        chalice_group = stack.chalice_pid
        assert chalice_group is not None
        assert None not in groups
        assert 100 <= _post_rpc(stack.rpc_url) < 600
        assert stack.bridge_status()["subscribed"] is True
        # The scheduled jobs run through the same handlers as in AWS.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            job.get("runs") for job in stack.jobs_status().values()
        ):
            time.sleep(0.5)
        jobs = stack.jobs_status()
        assert set(jobs) == {
            "settle_due_purchases",
            "expire_unsold_credits",
            "resolve_due_disputes",
            "push_market_stats",
        }, jobs
        for job in jobs.values():
            assert job["runs"] >= 1 and job["failures"] == 0, (jobs, log_path.read_text())
        assert jobs["settle_due_purchases"]["last"]["job"] == "settlement"
        # The WebSocket gateway serves the app's handlers and the @connections API.
        assert stack.websockets_status()["websocket_url"] == stack.websocket_url
        endpoint = stack.environment["WEBSOCKET_MANAGEMENT_ENDPOINT"]
        assert endpoint == stack.websocket_management_endpoint
        with ws_connect(stack.websocket_url, proxy=None, open_timeout=10):
            pass
        management = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        with pytest.raises(ClientError) as gone:
            management.get_connection(ConnectionId="AAAAAAAAAAAAAAA=")
        assert gone.value.response["Error"]["Code"] == "GoneException"
        # The dashboard's origin passes /rpc to the API and /ws to the WebSocket API.
        assert _post_rpc(f"{stack.dashboard_url}rpc") == 200
        with ws_connect(f"ws://127.0.0.1:{stack.web_port}/ws", proxy=None, open_timeout=10) as ws:
            ws.send(json.dumps({"action": "ping", "id": "p"}))
            assert json.loads(ws.recv(timeout=10)) == {"type": "pong", "id": "p"}
        assert "dashboard:" in stack.describe() and stack.dashboard_url in stack.describe()
        ws_port = stack.ws_port
        web_port = stack.web_port
        mqtt_port = stack.mqtt_port
        assert mqtt_port is not None
        iot = stack.aws_client("iot")
        assert iot.describe_thing_type(thingTypeName=stack.iot_names["thing_type"])
        assert iot.get_policy(policyName=stack.iot_names["policy"])
        assert stack.aws_client("sqs").get_queue_url(QueueName=f"{stack.stack_name}-ingest-dlq")

        client = boto3.client(
            "dynamodb",
            endpoint_url=stack.moto_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert set(client.list_tables()["TableNames"]) >= set(stack.table_names.values())
        assert stack.table_names == table_environment("energy-marketplace-local")
        key, _ = load_or_create_operator_key(tmp_path / "state")
        assert stack.environment["OPERATOR_PUBLIC_KEY"] == key.verify_key.encode().hex()
        api_port = stack.api_port

    for group in groups:
        assert group is not None and not _process_alive(group), log_path.read_text()
    assert not _group_alive(chalice_group), log_path.read_text()
    # The API, MQTT, WebSocket and dashboard ports are free again.
    for port in (api_port, mqtt_port, ws_port, web_port):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))


def test_local_stack_refuses_a_busy_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy_port = squatter.getsockname()[1]

        with pytest.raises(PortInUseError, match=f"moto port 127.0.0.1:{busy_port}"):
            LocalStack(moto_port=busy_port, api_port=free_port(), state_dir=tmp_path).start()

        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "infra.local_stack",
                "--moto-port",
                str(busy_port),
                "--state-dir",
                str(tmp_path / "cli-state"),
            ],
            cwd=PROJECT_DIR,
            env=_subprocess_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: moto port 127.0.0.1:{busy_port} is already in use (Address already in use); "
        "choose another with --moto-port or MOTO_PORT"
    ]


def test_local_stack_refuses_a_busy_websocket_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy_port = squatter.getsockname()[1]

        with pytest.raises(
            PortInUseError, match=f"WebSocket port 127.0.0.1:{busy_port}.*--ws-port"
        ):
            LocalStack(
                moto_port=0, api_port=free_port(), ws_port=busy_port, state_dir=tmp_path
            ).start()


def test_moto_server_reports_a_failed_bind_instead_of_hanging() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = LocalMotoServer(
            ip_address="127.0.0.1", port=squatter.getsockname()[1], verbose=False
        )
        starter = threading.Thread(target=server.start, daemon=True)
        starter.start()
        starter.join(timeout=20)

    assert not starter.is_alive(), "ThreadedMotoServer.start() blocked on a busy port"
    assert isinstance(server.bind_error, OSError)


def test_the_market_events_function_reads_the_ledger_stream(
    packaged_template: dict[str, Any],
) -> None:
    function = packaged_template["Resources"]["PublishMarketEvents"]
    assert function["Type"] == "AWS::Serverless::Function"
    (source,) = function["Properties"]["Events"].values()
    assert source["Type"] == "DynamoDB"
    assert source["Properties"]["Stream"] == {"Fn::GetAtt": ["LedgerTable", "StreamArn"]}
    # The analytics need the shard id, which Lambda sends with a tumbling window.
    assert source["Properties"]["TumblingWindowInSeconds"] == 60


def test_the_fraud_watch_reads_the_registry_stream(packaged_template: dict[str, Any]) -> None:
    function = packaged_template["Resources"]["WatchMeters"]
    assert function["Type"] == "AWS::Serverless::Function"
    (source,) = function["Properties"]["Events"].values()
    assert source["Type"] == "DynamoDB"
    assert source["Properties"]["Stream"] == {"Fn::GetAtt": ["RegistryTable", "StreamArn"]}
    assert source["Properties"]["TumblingWindowInSeconds"] == 60


@pytest.mark.parametrize("handler", ["publish_market_events", "watch_meters"])
def test_the_stream_functions_answer_as_a_tumbling_window_function_must(
    dynamodb: Any, handler: str
) -> None:
    import app
    from infra.stream_poller import lambda_event

    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
    answer = getattr(app, handler)(lambda_event([], arn, "shardId-1"), None)
    # Without "state" Lambda counts the invocation as failed.
    assert answer == {"state": {}, "batchItemFailures": []}
