"""What a function's process writes to stdout, as Lambda would ship it to CloudWatch Logs.

A subprocess stands in for the Lambda runtime: it puts a text handler on the
root logger (as the runtime does before it imports the function), imports
``app`` and invokes two functions with a Lambda context, on moto's tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.emf_spec import emf_violations

ROOT = Path(__file__).resolve().parents[2]

LAMBDA_LIKE_PROCESS = r"""
import base64, logging, os, sys, time, types

# The runtime's own handler, text lines with a prefix, on the root logger.
runtime = logging.StreamHandler(sys.stdout)
runtime.setFormatter(logging.Formatter("[%(levelname)s]\t%(asctime)s\t%(message)s"))
logging.getLogger().addHandler(runtime)

import boto3
from moto import mock_aws

with mock_aws():
    from infra.emulation import create_tables

    os.environ.update(create_tables(boto3.client("dynamodb"), "observability"))
    import app

    app.ingest_reading(
        {
            "payload": base64.b64encode(b"{oops").decode(),
            "topic_meter_address": "0x" + "ab" * 20,
            "received_at_ms": int(time.time() * 1000),
        },
        types.SimpleNamespace(aws_request_id="req-ingest"),
    )
    scheduled = {
        "version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-12-01T00:00:00Z", "region": "us-east-1",
        "resources": [], "detail": {},
    }
    app.expire_unsold_credits(scheduled, types.SimpleNamespace(aws_request_id="req-expiry"))
"""


def test_a_function_writes_valid_metric_lines_and_json_logs_with_its_request_id(
    aws_credentials: None,
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MARKETPLACE_ID": "energy-marketplace-observability",
        "OPERATOR_PUBLIC_KEY": "11" * 32,
    }
    finished = subprocess.run(
        [sys.executable, "-c", LAMBDA_LIKE_PROCESS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    # Every line is one JSON object: no runtime prefix in front of any of them.
    documents = [json.loads(line) for line in lines]
    metric_lines = [line for line, d in zip(lines, documents, strict=True) if "_aws" in d]
    logs = [d for d in documents if "_aws" not in d]

    (rejected,) = metric_lines
    assert emf_violations(rejected) == []
    metric = json.loads(rejected)
    assert metric["ReadingsRejected"] == 1 and metric["reason"] == "malformed"
    assert metric["aws_request_id"] == "req-ingest"

    (job,) = [d for d in logs if d["message"] == "scheduled job finished"]
    assert job["aws_request_id"] == "req-expiry"
    assert job["logger"] == "chalicelib.services.expiry" and "job_run" in job
    assert {d["level"] for d in logs} <= {"INFO", "WARNING", "ERROR"}
