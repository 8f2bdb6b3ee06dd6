"""`make deploy STAGE=...`: the marketplace into an AWS account, in one command.

Steps, each safe to run again (docs/deploy.md):
1. find or create the artifact bucket (one per account and region);
2. find or create the stack's receipt signing key (an SSM SecureString,
   generated here on the first deploy, never printed) and its operator public
   key (an SSM String: given once, found afterwards);
3. `chalice package --merge-template infra/template.yaml`;
4. upload the Lambda zip and the template (what `aws cloudformation package`
   does), create or update the stack and wait for it;
5. build the dashboard with the stack's WebSocket URL and upload it;
6. print the API URL, the IoT endpoint, the WebSocket URL and the dashboard
   URL, and make one smoke call (energy.getMarketInfo).

A new stack is created with its tables' deletion protection off, so that a
failed first create rolls back cleanly (infra/template.yaml's header), and
switched on by the update that follows. A stack left in ROLLBACK_COMPLETE by a
failed first create holds nothing and is deleted before the next attempt.

Every AWS call goes through the clients of one boto3 session, so the tests run
these steps against moto (tests/integration/test_deploy.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import BotoCoreError, ClientError, WaiterError
from nacl.signing import SigningKey

PROJECT_DIR = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = PROJECT_DIR / "infra" / "template.yaml"
WEB_DIR = PROJECT_DIR / "web"
APP_NAME = "energy-marketplace"
# The SAM transform needs CAPABILITY_AUTO_EXPAND; the per-function roles CAPABILITY_IAM.
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
_STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
_PUBLIC_KEY = re.compile(r"^[0-9a-f]{64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
# The template's MarketplaceId pattern: checked here, before anything is created.
MARKETPLACE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# Stack states from which an update is impossible but a delete starts afresh:
# a first create that failed and rolled back (its retained-on-create resources
# were removed with it).
_EMPTY_AFTER_FAILED_CREATE = {"ROLLBACK_COMPLETE"}


class DeployError(RuntimeError):
    """A deploy step failed; the message says which and what to do."""


def signing_key_parameter(stack_name: str) -> str:
    """The SSM name of a stack's receipt signing key (the template's convention)."""
    return f"/{APP_NAME}/{stack_name}/receipt-signing-key"


def operator_key_parameter(stack_name: str) -> str:
    return f"/{APP_NAME}/{stack_name}/operator-public-key"


def artifact_bucket_name(account_id: str, region: str) -> str:
    return f"{APP_NAME}-artifacts-{account_id}-{region}"


@dataclass(frozen=True)
class Clients:
    """The AWS clients a deploy uses, from one session (and one endpoint in tests)."""

    session: Any
    endpoint_url: str | None = None

    def __call__(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)

    @property
    def region(self) -> str:
        return str(self.session.region_name)


# --- 1. the artifact bucket ------------------------------------------------------------


def ensure_artifact_bucket(clients: Clients) -> str:
    """The account's artifact bucket for this region, created private if missing."""
    account_id = clients("sts").get_caller_identity()["Account"]
    name = artifact_bucket_name(account_id, clients.region)
    s3 = clients("s3")
    try:
        s3.head_bucket(Bucket=name)
        return name
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
            raise DeployError(f"artifact bucket {name} exists but is not ours: {exc}") from exc
    create: dict[str, Any] = {"Bucket": name}
    if clients.region != "us-east-1":  # us-east-1 refuses its own location constraint
        create["CreateBucketConfiguration"] = {"LocationConstraint": clients.region}
    s3.create_bucket(**create)
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    return name


# --- 2. the keys -----------------------------------------------------------------------


def ensure_signing_key(clients: Clients, stack_name: str) -> str:
    """The stack's receipt signing key, generated on first use; returns its public key.

    The seed goes from this process to SSM (a SecureString under aws/ssm) and is
    never printed or written to disk. Overwrite=False: a key that exists is never
    replaced (receipts signed with it verify only with its public key).
    """
    ssm = clients("ssm")
    name = signing_key_parameter(stack_name)
    try:
        ssm.put_parameter(
            Name=name,
            Type="SecureString",
            Value=bytes(SigningKey.generate()).hex(),
            Overwrite=False,
            Description="Ed25519 seed that signs settlement receipts (infra/deploy.py)",
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ParameterAlreadyExists":
            raise
    seed = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    try:
        key = SigningKey(bytes.fromhex(seed.strip()))
    except ValueError as exc:
        raise DeployError(f"{name} does not hold a 32-byte hex Ed25519 seed") from exc
    return key.verify_key.encode().hex()


def ensure_operator_key(clients: Clients, stack_name: str, given: str | None) -> str:
    """The operator's public key: the one given (stored for next time), else the stored one."""
    ssm = clients("ssm")
    name = operator_key_parameter(stack_name)
    if given:
        given = given.strip().lower()
        if not _PUBLIC_KEY.fullmatch(given):
            raise DeployError("the operator public key must be 64 hex characters")
        ssm.put_parameter(Name=name, Type="String", Value=given, Overwrite=True)
        return given
    try:
        return str(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
            raise
    raise DeployError(
        "no operator public key yet for this stack: give OPERATOR_PUBLIC_KEY=<64 hex> on the "
        "first deploy (docs/deploy.md shows how to make one offline)"
    )


# --- 3. and 4. package, upload, deploy ---------------------------------------------------


def package(build_dir: Path, stage: str, region: str) -> Path:
    """`chalice package --merge-template`: returns the path of the SAM template."""
    build_dir.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "AWS_DEFAULT_REGION": region}
    _run(
        [
            str(Path(sys.executable).with_name("chalice")),
            "--project-dir",
            str(PROJECT_DIR),
            "package",
            "--stage",
            stage,
            "--merge-template",
            str(TEMPLATE_PATH),
            str(build_dir),
        ],
        cwd=PROJECT_DIR,
        environment=environment,
        what="chalice package",
    )
    return build_dir / "sam.yaml"


def _run(command: list[str], *, cwd: Path, environment: dict[str, str], what: str) -> None:
    """Run a build step; its whole output in the error if it fails (no traceback)."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DeployError(f"{what} failed:\n{result.stdout}{result.stderr}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def upload_artifacts(clients: Clients, bucket: str, stack_name: str, sam_path: Path) -> str:
    """Upload the code and the template, as `aws cloudformation package` would.

    Every local CodeUri (and layer ContentUri) becomes the S3 URI of its zip,
    keyed by content hash, so an unchanged zip is not uploaded twice. Returns
    the template's S3 key.
    """
    template = yaml.safe_load(sam_path.read_text(encoding="utf-8"))
    s3 = clients("s3")
    uploaded: dict[Path, str] = {}
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for field in ("CodeUri", "ContentUri"):
            location = properties.get(field)
            if not isinstance(location, str) or location.startswith("s3://"):
                continue
            local = (sam_path.parent / location).resolve()
            if local not in uploaded:
                key = f"{stack_name}/code/{_sha256(local)}.zip"
                s3.upload_file(str(local), bucket, key)
                uploaded[local] = f"s3://{bucket}/{key}"
            properties[field] = uploaded[local]
    body = yaml.safe_dump(template, sort_keys=False).encode()
    key = f"{stack_name}/templates/{hashlib.sha256(body).hexdigest()}.yaml"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return key


def template_url(clients: Clients, bucket: str, key: str) -> str:
    return f"https://{bucket}.s3.{clients.region}.amazonaws.com/{key}"


def stack_parameters(
    marketplace_id: str,
    operator_public_key: str,
    receipt_public_key: str,
    alarm_email: str,
    *,
    protect_tables: bool,
) -> list[dict[str, str]]:
    values = {
        "MarketplaceId": marketplace_id,
        "OperatorPublicKey": operator_public_key,
        "ReceiptPublicKey": receipt_public_key,
        "AlarmEmail": alarm_email,
        "TableDeletionProtection": "true" if protect_tables else "false",
    }
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def stack_status(cloudformation: Any, stack_name: str) -> str | None:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc.response.get("Error", {}).get("Message", "")):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def _wait(cloudformation: Any, waiter: str, stack_name: str) -> None:
    try:
        cloudformation.get_waiter(waiter).wait(
            StackName=stack_name, WaiterConfig={"Delay": 10, "MaxAttempts": 360}
        )
    except WaiterError as exc:
        reasons = [
            f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason', '')}"
            for event in cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"][
                :50
            ]
            if event["ResourceStatus"].endswith("FAILED")
        ]
        raise DeployError(
            f"stack {stack_name} did not reach {waiter}:\n  " + "\n  ".join(reasons[:10])
        ) from exc


def deploy_stack(
    clients: Clients,
    stack_name: str,
    url: str,
    parameters: Callable[[bool], list[dict[str, str]]],
) -> dict[str, str]:
    """Create or update the stack from the template at ``url``; returns its outputs.

    ``parameters(protect_tables)`` gives the parameter list: a new stack is
    created unprotected, then updated to protected.
    """
    cloudformation = clients("cloudformation")
    status = stack_status(cloudformation, stack_name)
    if status in _EMPTY_AFTER_FAILED_CREATE:
        print(f"stack {stack_name} is {status} after a failed first create: deleting it")
        cloudformation.delete_stack(StackName=stack_name)
        _wait(cloudformation, "stack_delete_complete", stack_name)
        status = None
    if status is None:
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateURL=url,
            Parameters=parameters(False),
            Capabilities=CAPABILITIES,
            OnFailure="ROLLBACK",
        )
        _wait(cloudformation, "stack_create_complete", stack_name)
    _update(cloudformation, stack_name, url, parameters(True))
    outputs = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0].get("Outputs", [])
    return {str(o["OutputKey"]): str(o["OutputValue"]) for o in outputs}


def _update(cloudformation: Any, stack_name: str, url: str, parameters: list[Any]) -> None:
    try:
        cloudformation.update_stack(
            StackName=stack_name,
            TemplateURL=url,
            Parameters=parameters,
            Capabilities=CAPABILITIES,
        )
    except ClientError as exc:
        if "No updates are to be performed" in str(exc.response.get("Error", {}).get("Message")):
            return
        raise
    _wait(cloudformation, "stack_update_complete", stack_name)


# --- 5. the dashboard --------------------------------------------------------------------


def build_dashboard(out_dir: Path, websocket_url: str) -> Path:
    """`npm run build` into ``out_dir`` with the stack's WebSocket URL built in.

    The page calls /rpc on its own origin (CloudFront routes it to the API);
    the WebSocket API has its own host, given as VITE_WS_URL (web/src/config.ts).
    web/dist, which `make run` serves, is left alone.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise DeployError("npm is missing: install Node.js 20.19+ with npm (web/README.md)")
    environment = {**os.environ, "VITE_WS_URL": websocket_url.rstrip("/")}
    _run(
        [npm, "run", "build", "--silent", "--", "--outDir", str(out_dir), "--emptyOutDir"],
        cwd=WEB_DIR,
        environment=environment,
        what="the dashboard build",
    )
    return out_dir


def dashboard_files(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path.relative_to(root).as_posix(), path


def cache_control(key: str) -> str:
    # Vite names assets by content hash: they never change under a name. The
    # page itself must be fetched afresh to pick up a new build.
    if key.startswith("assets/"):
        return "public, max-age=31536000, immutable"
    return "no-cache"


def upload_dashboard(clients: Clients, bucket: str, built: Path) -> list[str]:
    """Upload a build to the dashboard bucket; remove what the build no longer has."""
    s3 = clients("s3")
    keys = []
    for key, path in dashboard_files(built):
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        s3.upload_file(
            str(path),
            bucket,
            key,
            ExtraArgs={"ContentType": content_type, "CacheControl": cache_control(key)},
        )
        keys.append(key)
    stale = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
        if item["Key"] not in keys
    ]
    for start in range(0, len(stale), 1000):
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[start : start + 1000]]}
        )
    return keys


def invalidate_page(clients: Clients, distribution_id: str) -> None:
    """Make CloudFront fetch the new index.html (the hashed assets need nothing)."""
    clients("cloudfront").create_invalidation(
        DistributionId=distribution_id,
        InvalidationBatch={
            "Paths": {"Quantity": 1, "Items": ["/index.html"]},
            "CallerReference": hashlib.sha256(os.urandom(16)).hexdigest()[:32],
        },
    )


# --- 6. what to tell the operator ------------------------------------------------------------


def iot_endpoint(clients: Clients) -> str:
    return str(clients("iot").describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"])


def smoke_call(rpc_url: str, timeout: float = 30.0) -> dict[str, Any]:
    """One unsigned read, energy.getMarketInfo: the API, its function and its settings."""
    if not rpc_url.startswith(("https://", "http://")):
        raise DeployError(f"not an HTTP URL: {rpc_url}")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        rpc_url,
        data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "energy.getMarketInfo"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
            answer = json.loads(response.read())
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        raise DeployError(f"smoke call to {rpc_url} failed: {exc}") from exc
    if not isinstance(answer, dict) or "result" not in answer:
        raise DeployError(f"smoke call to {rpc_url} answered {answer!r}")
    result: dict[str, Any] = answer["result"]
    return result


def check_market_info(
    info: Mapping[str, Any], marketplace_id: str, operator_key: str, receipt_key: str
) -> None:
    expected = {
        "marketplace_id": marketplace_id,
        "operator_public_key": operator_key,
        "receipt_public_key": receipt_key,
    }
    wrong = {k: info.get(k) for k, v in expected.items() if info.get(k) != v}
    if wrong:
        raise DeployError(f"the deployed API answers other settings than deployed: {wrong}")


def summary(outputs: Mapping[str, str], iot_address: str) -> str:
    return "\n".join(
        [
            f"API (JSON-RPC):  {outputs['EndpointURL']}rpc",
            f"WebSocket:       {outputs['WebsocketConnectEndpointURL']}",
            f"IoT endpoint:    {iot_address} (port 8883, mTLS)",
            f"Dashboard:       {outputs['DashboardURL']}",
            f"Alarms go to:    {outputs['AlarmTopicArn']} (confirm the e-mail subscription)",
        ]
    )


# --- the command -------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default=os.environ.get("STAGE", "dev"))
    parser.add_argument("--stack-name", default=os.environ.get("STACK_NAME") or None)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or None)
    parser.add_argument("--marketplace-id", default=os.environ.get("MARKETPLACE_ID") or None)
    parser.add_argument(
        "--operator-public-key", default=os.environ.get("OPERATOR_PUBLIC_KEY") or None
    )
    parser.add_argument("--alarm-email", default=os.environ.get("ALARM_EMAIL") or None)
    parser.add_argument("--build-dir", type=Path, default=None)
    parser.add_argument("--skip-dashboard", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    stack_name = args.stack_name or f"{APP_NAME}-{args.stage}"
    marketplace_id = args.marketplace_id or stack_name.lower()
    try:
        if not _STACK_NAME.fullmatch(stack_name):
            raise DeployError(f"stack name {stack_name!r}: letters, digits and hyphens")
        if not MARKETPLACE_ID_PATTERN.fullmatch(marketplace_id):
            raise DeployError(
                f"marketplace id {marketplace_id!r}: lower-case letters, digits and hyphens, "
                "at most 63 (set MARKETPLACE_ID)"
            )
        if not args.alarm_email or not _EMAIL.fullmatch(args.alarm_email):
            raise DeployError("give ALARM_EMAIL=<address>: every alarm is sent there")
        session = boto3.Session(region_name=args.region)
        if not session.region_name:
            raise DeployError("no region: set AWS_REGION (or AWS_DEFAULT_REGION)")
        clients = Clients(session)
        build_dir = args.build_dir or PROJECT_DIR / "build" / "deploy" / stack_name
        run(
            clients,
            stack_name=stack_name,
            stage=args.stage,
            marketplace_id=marketplace_id,
            operator_public_key=args.operator_public_key,
            alarm_email=args.alarm_email,
            build_dir=build_dir,
            dashboard=not args.skip_dashboard,
        )
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        # No credentials, no access, a throttled call: AWS's words, without a traceback.
        print(f"error: AWS refused a deploy step: {exc}", file=sys.stderr)
        return 1
    return 0


def run(
    clients: Clients,
    *,
    stack_name: str,
    stage: str,
    marketplace_id: str,
    operator_public_key: str | None,
    alarm_email: str,
    build_dir: Path,
    dashboard: bool = True,
) -> dict[str, str]:
    print(f"deploying stage {stage} as stack {stack_name} in {clients.region}")
    bucket = ensure_artifact_bucket(clients)
    receipt_key = ensure_signing_key(clients, stack_name)
    operator_key = ensure_operator_key(clients, stack_name, operator_public_key)
    print(f"artifacts: s3://{bucket}; receipt public key: {receipt_key}")
    sam_path = package(build_dir / "package", stage, clients.region)
    key = upload_artifacts(clients, bucket, stack_name, sam_path)
    outputs = deploy_stack(
        clients,
        stack_name,
        template_url(clients, bucket, key),
        lambda protect: stack_parameters(
            marketplace_id, operator_key, receipt_key, alarm_email, protect_tables=protect
        ),
    )
    if dashboard:
        built = build_dashboard(build_dir / "web", outputs["WebsocketConnectEndpointURL"])
        upload_dashboard(clients, outputs["DashboardBucketName"], built)
        invalidate_page(clients, outputs["DashboardDistributionId"])
    print(summary(outputs, iot_endpoint(clients)))
    info = smoke_call(outputs["EndpointURL"] + "rpc")
    check_market_info(info, marketplace_id, operator_key, receipt_key)
    print("smoke call energy.getMarketInfo: ok")
    return outputs


if __name__ == "__main__":
    sys.exit(main())
