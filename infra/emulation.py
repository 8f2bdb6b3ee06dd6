"""Build the offline (moto) resources from infra/template.yaml, the one definition.

Tables (DynamoDB), the meter thing type and policy (IoT), the queues (SQS:
the ingest dead-letter queue and the stream consumers' failure queue), the
topic rule's SQL for the rules bridge, and the stream event sources'
settings for the stream poller.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import yaml
from botocore.exceptions import ClientError

TEMPLATE_PATH = Path(__file__).with_name("template.yaml")

_TABLE_TYPE = "AWS::DynamoDB::Table"
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")

# Logical ids of the IoT and queue resources the offline stack builds or reads.
METER_THING_TYPE_ID = "MeterThingType"
METER_POLICY_ID = "MeterPolicy"
INGEST_TOPIC_RULE_ID = "IngestTopicRule"
INGEST_DEAD_LETTER_QUEUE_ID = "IngestDeadLetterQueue"
STREAM_FAILURES_QUEUE_ID = "StreamFailuresQueue"
# moto's default account; any 12 digits would do offline.
OFFLINE_ACCOUNT_ID = "123456789012"
_RULE_TOPIC_FILTER = re.compile(r"\bFROM\s+'([^']+)'", re.IGNORECASE)


class TemplateError(ValueError):
    """The template does not have the shape the emulation relies on."""


class DynamoDBClient(Protocol):
    """The part of a boto3 DynamoDB client the emulation uses."""

    def create_table(self, **kwargs: Any) -> Any: ...

    def update_time_to_live(self, **kwargs: Any) -> Any: ...

    def get_waiter(self, waiter_name: str) -> Any: ...


@cache
def _load_template_cached() -> Mapping[str, Any]:
    with TEMPLATE_PATH.open(encoding="utf-8") as template_file:
        template = yaml.safe_load(template_file)
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise TemplateError(f"{TEMPLATE_PATH} has no Resources mapping")
    return template


def load_template() -> dict[str, Any]:
    """Return the merge template as plain data (a fresh copy the caller may change)."""
    return copy.deepcopy(dict(_load_template_cached()))


def _function_environment(template: Mapping[str, Any]) -> dict[str, Any]:
    try:
        variables = template["Globals"]["Function"]["Environment"]["Variables"]
    except (KeyError, TypeError) as exc:
        raise TemplateError("template has no Globals.Function.Environment.Variables") from exc
    if not isinstance(variables, dict):
        raise TemplateError("Globals.Function.Environment.Variables is not a mapping")
    return variables


def table_logical_ids(template: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Map each function environment variable that names a table to the table's logical id."""
    template = template if template is not None else _load_template_cached()
    resources: Mapping[str, Any] = template["Resources"]
    tables: dict[str, str] = {}
    for variable, value in _function_environment(template).items():
        if not (isinstance(value, dict) and set(value) == {"Ref"}):
            continue
        logical_id = value["Ref"]
        resource = resources.get(logical_id)
        if isinstance(resource, dict) and resource.get("Type") == _TABLE_TYPE:
            tables[str(variable)] = str(logical_id)
    unreferenced = {
        logical_id
        for logical_id, resource in resources.items()
        if isinstance(resource, dict) and resource.get("Type") == _TABLE_TYPE
    } - set(tables.values())
    if unreferenced:
        # A table no function can find is a mistake in the template.
        raise TemplateError(f"tables without a function environment variable: {unreferenced}")
    return tables


def _resolve_sub(value: Any, pseudo_parameters: Mapping[str, str]) -> str:
    """Resolve a plain string or an {"Fn::Sub": "..."} using only the given pseudo parameters.

    ``${!Name}`` is Fn::Sub's escape for a literal ``${Name}`` (an IoT policy variable).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name not in pseudo_parameters:
                raise TemplateError(f"cannot resolve ${{{name}}} offline in {value!r}")
            return pseudo_parameters[name]

        return _SUB_VARIABLE.sub(replace, value["Fn::Sub"])
    raise TemplateError(f"unsupported value for an offline name: {value!r}")


def _create_table_kwargs(properties: Mapping[str, Any], table_name: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": [dict(item) for item in properties["AttributeDefinitions"]],
        "KeySchema": [dict(item) for item in properties["KeySchema"]],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    indexes = properties.get("GlobalSecondaryIndexes")
    if indexes:
        kwargs["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index["IndexName"],
                "KeySchema": [dict(item) for item in index["KeySchema"]],
                "Projection": dict(index["Projection"]),
            }
            for index in indexes
        ]
    stream = properties.get("StreamSpecification")
    if stream:
        # CloudFormation enables the stream by giving a view type; the API wants both.
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    # SSESpecification and PointInTimeRecoverySpecification have no observable effect
    # offline, so the emulation leaves them out.
    return kwargs


def table_definitions(stack_name: str) -> dict[str, dict[str, Any]]:
    """Map each table environment variable to the kwargs of dynamodb create_table for it."""
    template = _load_template_cached()
    pseudo_parameters = {"AWS::StackName": stack_name}
    definitions: dict[str, dict[str, Any]] = {}
    for variable, logical_id in table_logical_ids(template).items():
        properties = template["Resources"][logical_id]["Properties"]
        table_name = _resolve_sub(properties["TableName"], pseudo_parameters)
        definitions[variable] = _create_table_kwargs(properties, table_name)
    return definitions


def time_to_live_attributes(stack_name: str) -> dict[str, str]:
    """Map each table name to its TTL attribute, for the tables that enable TTL."""
    template = _load_template_cached()
    pseudo_parameters = {"AWS::StackName": stack_name}
    attributes: dict[str, str] = {}
    for logical_id in table_logical_ids(template).values():
        properties = template["Resources"][logical_id]["Properties"]
        spec = properties.get("TimeToLiveSpecification")
        if spec and spec.get("Enabled"):
            table_name = _resolve_sub(properties["TableName"], pseudo_parameters)
            attributes[table_name] = str(spec["AttributeName"])
    return attributes


def table_environment(stack_name: str) -> dict[str, str]:
    """Map each table environment variable to the table name for this stack."""
    return {
        variable: str(kwargs["TableName"])
        for variable, kwargs in table_definitions(stack_name).items()
    }


def create_tables(client: DynamoDBClient, stack_name: str) -> dict[str, str]:
    """Create every table of the template (with TTL) and return env var -> table name."""
    ttl_attributes = time_to_live_attributes(stack_name)
    environment: dict[str, str] = {}
    for variable, kwargs in table_definitions(stack_name).items():
        table_name = str(kwargs["TableName"])
        client.create_table(**kwargs)
        # moto creates tables ACTIVE at once; the waiter keeps this right against a
        # real endpoint too, where TTL cannot be set on a table still CREATING.
        client.get_waiter("table_exists").wait(
            TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        if table_name in ttl_attributes:
            client.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={
                    "Enabled": True,
                    "AttributeName": ttl_attributes[table_name],
                },
            )
        environment[variable] = table_name
    return environment


# --- IoT and SQS ---------------------------------------------------------------------------


class IotClient(Protocol):
    """The part of a boto3 IoT client the emulation and provisioning use."""

    def create_thing_type(self, **kwargs: Any) -> Any: ...

    def describe_thing_type(self, **kwargs: Any) -> Any: ...

    def create_policy(self, **kwargs: Any) -> Any: ...

    def get_policy(self, **kwargs: Any) -> Any: ...


class SqsClient(Protocol):
    """The part of a boto3 SQS client the emulation uses."""

    def create_queue(self, **kwargs: Any) -> Any: ...


def pseudo_parameters(
    stack_name: str, region: str, account_id: str = OFFLINE_ACCOUNT_ID, partition: str = "aws"
) -> dict[str, str]:
    return {
        "AWS::StackName": stack_name,
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::Partition": partition,
    }


def _resolve(value: Any, parameters: Mapping[str, str]) -> Any:
    """Resolve every Fn::Sub inside ``value`` (a policy document, say)."""
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"}:
            return _resolve_sub(value, parameters)
        if any(key.startswith("Fn::") or key == "Ref" for key in value):
            raise TemplateError(f"cannot resolve {value!r} offline")
        return {key: _resolve(item, parameters) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, parameters) for item in value]
    return value


def _resource(logical_id: str, resource_type: str) -> Mapping[str, Any]:
    resource = _load_template_cached()["Resources"].get(logical_id)
    if not isinstance(resource, dict) or resource.get("Type") != resource_type:
        raise TemplateError(f"the template has no {resource_type} named {logical_id}")
    properties = resource.get("Properties")
    if not isinstance(properties, dict):
        raise TemplateError(f"{logical_id} has no Properties")
    return properties


def meter_thing_type(stack_name: str) -> dict[str, Any]:
    """Kwargs of iot create_thing_type for the meter thing type."""
    properties = _resource(METER_THING_TYPE_ID, "AWS::IoT::ThingType")
    name = _resolve_sub(properties["ThingTypeName"], {"AWS::StackName": stack_name})
    cfn_properties = properties.get("ThingTypeProperties", {})
    # CloudFormation spells the properties in PascalCase, the IoT API in camelCase.
    api_properties: dict[str, Any] = {}
    if "ThingTypeDescription" in cfn_properties:
        api_properties["thingTypeDescription"] = str(cfn_properties["ThingTypeDescription"])
    if "SearchableAttributes" in cfn_properties:
        api_properties["searchableAttributes"] = list(cfn_properties["SearchableAttributes"])
    return {"thingTypeName": name, "thingTypeProperties": api_properties}


def meter_thing_type_name(stack_name: str) -> str:
    return str(meter_thing_type(stack_name)["thingTypeName"])


def meter_policy_name(stack_name: str) -> str:
    properties = _resource(METER_POLICY_ID, "AWS::IoT::Policy")
    return _resolve_sub(properties["PolicyName"], {"AWS::StackName": stack_name})


def meter_policy_document(
    stack_name: str, region: str, account_id: str = OFFLINE_ACCOUNT_ID, partition: str = "aws"
) -> dict[str, Any]:
    """The meter IoT policy document, resolved for one account and region."""
    properties = _resource(METER_POLICY_ID, "AWS::IoT::Policy")
    document = _resolve(
        properties["PolicyDocument"], pseudo_parameters(stack_name, region, account_id, partition)
    )
    if not isinstance(document, dict):
        raise TemplateError("MeterPolicy's PolicyDocument is not a mapping")
    return document


def queue_definition(logical_id: str, stack_name: str) -> dict[str, Any]:
    """Kwargs of sqs create_queue for one of the template's queues."""
    properties = _resource(logical_id, "AWS::SQS::Queue")
    attributes: dict[str, str] = {}
    if "MessageRetentionPeriod" in properties:
        attributes["MessageRetentionPeriod"] = str(properties["MessageRetentionPeriod"])
    if "SqsManagedSseEnabled" in properties:
        attributes["SqsManagedSseEnabled"] = str(properties["SqsManagedSseEnabled"]).lower()
    return {
        "QueueName": _resolve_sub(properties["QueueName"], {"AWS::StackName": stack_name}),
        "Attributes": attributes,
    }


def dead_letter_queue(stack_name: str) -> dict[str, Any]:
    """Kwargs of sqs create_queue for the ingest dead-letter queue."""
    return queue_definition(INGEST_DEAD_LETTER_QUEUE_ID, stack_name)


@dataclass(frozen=True)
class StreamEventSource:
    """A stream function's event source mapping, as the template configures it.

    -1 (Lambda's default) for the retry limit or the record age means none.
    """

    function_logical_id: str
    tumbling_window_seconds: int | None = None
    report_batch_item_failures: bool = False
    bisect_on_function_error: bool = False
    maximum_retry_attempts: int = -1
    maximum_record_age_seconds: int = -1
    on_failure_queue_id: str | None = None  # a queue of the template, by logical id
    # FilterCriteria's patterns: a record reaches the function if any matches
    # (none: every record does).
    filters: tuple[Mapping[str, Any], ...] = ()

    def admits(self, record: Mapping[str, Any]) -> bool:
        """Whether Lambda hands ``record`` (as GetRecords returns it) to the function."""
        return not self.filters or any(_matches(p, record) for p in self.filters)


def _matches(pattern: Mapping[str, Any], value: Any) -> bool:
    # Lambda's event filtering, the part the template uses: every field the
    # pattern names is present, an object's fields match in turn, and a
    # list is the values a field may have.
    if not isinstance(value, Mapping):
        return False
    for name, wanted in pattern.items():
        if name not in value:
            return False
        if isinstance(wanted, Mapping):
            if not _matches(wanted, value[name]):
                return False
        elif value[name] not in wanted:
            return False
    return True


def _filter_pattern(logical_id: str, text: Any) -> Mapping[str, Any]:
    """A FilterCriteria pattern, held to the part of the syntax ``_matches`` follows."""
    try:
        pattern = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        pattern = None

    def plain(node: Any) -> bool:
        if isinstance(node, dict):
            return bool(node) and all(plain(child) for child in node.values())
        return (
            isinstance(node, list)
            and bool(node)
            and all(isinstance(v, str | int) and not isinstance(v, bool) for v in node)
        )

    if not isinstance(pattern, dict) or not plain(pattern):
        raise TemplateError(
            f"{logical_id}'s filter pattern {text!r} is not fields matched to lists of"
            " values (the only filter syntax the stream poller emulates)"
        )
    return pattern


def function_logical_id(function_name: str) -> str:
    """The logical id ``chalice package`` gives a function (its CamelCase name)."""
    from chalice.utils import to_cfn_resource_name

    return to_cfn_resource_name(function_name)


def stream_event_source(function_name: str) -> StreamEventSource:
    """The settings of a stream function's event source mapping, read from the template.

    The template deep-merges them into the event ``<Function>DynamodbEventSource``
    that ``chalice package`` writes; a function the template does not mention
    gets Lambda's defaults.
    """
    logical_id = function_logical_id(function_name)
    function = _load_template_cached()["Resources"].get(logical_id) or {}
    events = (function.get("Properties") or {}).get("Events") or {}
    source = events.get(f"{logical_id}DynamodbEventSource") or {}
    properties = source.get("Properties") or {}
    destination = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
        "Destination"
    )
    queue_id = None
    if destination is not None:
        target = destination.get("Fn::GetAtt") if isinstance(destination, dict) else None
        if not (isinstance(target, list) and len(target) == 2 and target[1] == "Arn"):
            raise TemplateError(f"{logical_id}'s on-failure destination is not a queue's Arn")
        _resource(str(target[0]), "AWS::SQS::Queue")
        queue_id = str(target[0])
    window = properties.get("TumblingWindowInSeconds")
    filters = ((properties.get("FilterCriteria") or {}).get("Filters")) or []
    return StreamEventSource(
        function_logical_id=logical_id,
        tumbling_window_seconds=int(window) if window is not None else None,
        report_batch_item_failures="ReportBatchItemFailures"
        in (properties.get("FunctionResponseTypes") or []),
        bisect_on_function_error=bool(properties.get("BisectBatchOnFunctionError", False)),
        maximum_retry_attempts=int(properties.get("MaximumRetryAttempts", -1)),
        maximum_record_age_seconds=int(properties.get("MaximumRecordAgeInSeconds", -1)),
        on_failure_queue_id=queue_id,
        filters=tuple(
            _filter_pattern(logical_id, f.get("Pattern") if isinstance(f, dict) else f)
            for f in filters
        ),
    )


@dataclass(frozen=True)
class TopicRule:
    """What the rules bridge needs of the ingest topic rule."""

    sql: str
    sql_version: str
    topic_filter: str
    function_logical_id: str


def ingest_topic_rule() -> TopicRule:
    properties = _resource(INGEST_TOPIC_RULE_ID, "AWS::IoT::TopicRule")
    payload = properties["TopicRulePayload"]
    sql = " ".join(str(payload["Sql"]).split())
    match = _RULE_TOPIC_FILTER.search(sql)
    if match is None:
        raise TemplateError(f"cannot find the topic filter in {sql!r}")
    lambda_actions = [action["Lambda"] for action in payload["Actions"] if "Lambda" in action]
    if len(lambda_actions) != 1:
        raise TemplateError("the ingest topic rule must have exactly one Lambda action")
    target = lambda_actions[0]["FunctionArn"]
    if not (isinstance(target, dict) and list(target) == ["Fn::GetAtt"]):
        raise TemplateError(f"the rule's Lambda action does not name a function: {target!r}")
    return TopicRule(
        sql=sql,
        sql_version=str(payload["AwsIotSqlVersion"]),
        topic_filter=match.group(1),
        function_logical_id=str(target["Fn::GetAtt"][0]),
    )


def create_iot_resources(
    client: IotClient, stack_name: str, region: str, account_id: str = OFFLINE_ACCOUNT_ID
) -> dict[str, str]:
    """Create the meter thing type and policy (where missing); return their names.

    Idempotent, so provisioning can call it too: in AWS the stack has made both
    already and nothing is created.
    """
    thing_type = meter_thing_type(stack_name)
    try:
        client.describe_thing_type(thingTypeName=thing_type["thingTypeName"])
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        client.create_thing_type(**thing_type)
    policy_name = meter_policy_name(stack_name)
    try:
        client.get_policy(policyName=policy_name)
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        client.create_policy(
            policyName=policy_name,
            policyDocument=json.dumps(meter_policy_document(stack_name, region, account_id)),
        )
    return {"thing_type": str(thing_type["thingTypeName"]), "policy": policy_name}


def create_queues(client: SqsClient, stack_name: str) -> dict[str, str]:
    """Create the ingest dead-letter queue and the stream failures queue; logical id -> URL."""
    return {
        logical_id: str(client.create_queue(**queue_definition(logical_id, stack_name))["QueueUrl"])
        for logical_id in (INGEST_DEAD_LETTER_QUEUE_ID, STREAM_FAILURES_QUEUE_ID)
    }


def _error_code(exc: ClientError) -> str | None:
    code = exc.response.get("Error", {}).get("Code")
    return None if code is None else str(code)
