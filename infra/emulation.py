"""Build the offline (moto) DynamoDB tables from infra/template.yaml, the one table definition."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import yaml

TEMPLATE_PATH = Path(__file__).with_name("template.yaml")

_TABLE_TYPE = "AWS::DynamoDB::Table"
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


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
    """Resolve a plain string or an {"Fn::Sub": "..."} using only the given pseudo parameters."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
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
