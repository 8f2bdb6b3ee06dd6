"""Provision a meter: an IoT thing with a certificate and the meter policy, and its keys.

The same boto3 calls run against AWS and against moto. A meter is provisioned
for one provider:

1. the meter thing type and the meter policy exist (created from
   infra/template.yaml where missing: offline; in AWS the stack made them);
2. a thing named after the meter address, of that type, with the attribute
   ``provider_id``;
3. an X.509 certificate: issued by the local CA and registered into the IoT
   registry (offline: moto's own certificates cannot be verified by a TLS
   server), or made by IoT itself (``create_keys_and_certificate``, in AWS);
4. the policy attached to the certificate, the certificate to the thing;
5. the meter's Ed25519 key, which signs its readings (docs/meter-protocol.md);
6. a credentials directory for the meter client (iot/meter.py)::

       meter.json        meter_address, provider_id, topic, endpoint, port, ...
       certificate.pem   the X.509 client certificate (CN = meter address offline)
       private.key       its private key (0600)
       ca.pem            the CA that signed the broker's certificate
       meter.seed        the Ed25519 seed, hex (0600): the meter's "secure element"

**Keys born on the meter.** A device that makes its own keys
(``python -m iot.device_keys``, or its firmware) hands over only public
material, a *device request*: ``certificate.csr`` (a PKCS#10 request for its
TLS key, CN = meter address) and ``meter.pub`` (its Ed25519 public key, hex).
``--device-request DIR`` provisions from it: the CSR is signed by the local
CA offline, or by IoT's ``CreateCertificateFromCsr`` in AWS; the credentials
directory then gets no ``private.key`` and no ``meter.seed``: those never
left the meter, which puts the issued files beside them.

Optionally the meter's public key is then registered with its provider
through the JSON-RPC API, signed by the provider's owner: ``energy.updateProvider``
(key rotation) when the provider exists, else ``energy.registerProvider``
with the registration fields given.

    python -m iot.provision --meter-address solar_meter_001 --owner alice.theblock \\
        --out .local/meters/solar_meter_001 --local-ca .local/ca
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError
from nacl.signing import SigningKey

from chalicelib.domain import readings, signing
from chalicelib.domain.providers import is_valid_meter_address, provider_id_for
from energy_client import keyfiles
from energy_client.rpc_client import MarketplaceClient, RpcError, Signer
from infra.emulation import (
    create_iot_resources,
)
from iot.broker import DEFAULT_HOST, DEFAULT_PORT
from iot.ca import CertificateAuthority, CertificateAuthorityError, write_file

METER_FILE: Final = "meter.json"
CERTIFICATE_FILE: Final = "certificate.pem"
PRIVATE_KEY_FILE: Final = "private.key"
CA_FILE: Final = "ca.pem"
SEED_FILE: Final = "meter.seed"
STATE_FILE: Final = "state.json"
DEFAULT_STACK_NAME: Final = "energy-marketplace-local"
PROVIDER_ATTRIBUTE: Final = "provider_id"


class ProvisioningError(RuntimeError):
    """A meter could not be provisioned as asked."""


CSR_FILE: Final = "certificate.csr"
PUBLIC_KEY_FILE: Final = "meter.pub"


@dataclass(frozen=True)
class DeviceRequest:
    """What a meter that made its own keys gives provisioning: public material only."""

    csr_pem: bytes  # PKCS#10, for its TLS client key; CN = the meter address
    public_key: str  # its Ed25519 public key, hex: the key its readings are checked with

    @classmethod
    def load(cls, directory: Path) -> DeviceRequest:
        """The request a device wrote in ``directory`` (its private files are not read)."""
        try:
            csr_pem = (directory / CSR_FILE).read_bytes()
            public_key = (directory / PUBLIC_KEY_FILE).read_text(encoding="ascii").strip()
        except (OSError, ValueError) as exc:
            raise ProvisioningError(f"{directory} holds no device request: {exc}") from exc
        return cls(csr_pem, public_key)


class CertificateSource(StrEnum):
    LOCAL_CA = "local-ca"  # offline: issued by iot.ca, registered without a CA
    AWS = "aws"  # in AWS: create_keys_and_certificate


@dataclass(frozen=True)
class MeterCredentials:
    """What meter.json says about a provisioned meter; its files sit beside it."""

    meter_address: str
    provider_id: str
    thing_name: str
    topic: str
    endpoint: str
    port: int
    certificate_id: str
    certificate_arn: str
    public_key: str  # Ed25519, hex
    stack_name: str
    directory: Path

    @classmethod
    def load(cls, directory: Path) -> MeterCredentials:
        path = directory / METER_FILE
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                meter_address=str(document["meter_address"]),
                provider_id=str(document["provider_id"]),
                thing_name=str(document["thing_name"]),
                topic=str(document["topic"]),
                endpoint=str(document["endpoint"]),
                port=int(document["port"]),
                certificate_id=str(document["certificate_id"]),
                certificate_arn=str(document["certificate_arn"]),
                public_key=str(document["public_key"]),
                stack_name=str(document["stack_name"]),
                directory=directory,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ProvisioningError(f"{path} is not a meter's credentials: {exc}") from exc

    def document(self) -> dict[str, Any]:
        document = asdict(self)
        del document["directory"]
        return document

    @property
    def certificate_path(self) -> Path:
        return self.directory / CERTIFICATE_FILE

    @property
    def private_key_path(self) -> Path:
        return self.directory / PRIVATE_KEY_FILE

    @property
    def ca_path(self) -> Path | None:
        """The CA file to trust, or None to use the system's (AWS IoT's are public)."""
        path = self.directory / CA_FILE
        return path if path.exists() else None

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    def signing_key(self) -> SigningKey:
        seed = bytes.fromhex((self.directory / SEED_FILE).read_text(encoding="ascii").strip())
        key = SigningKey(seed)
        if bytes(key.verify_key).hex() != self.public_key:
            raise ProvisioningError(f"{self.directory}: {SEED_FILE} does not match meter.json")
        return key


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _ensure_thing(iot: Any, meter_address: str, thing_type: str, provider_id: str) -> None:
    # Looked up before creating: AWS refuses to create a thing that exists with other
    # attributes, moto silently replaces it; neither is what provisioning wants.
    try:
        thing = iot.describe_thing(thingName=meter_address)
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        iot.create_thing(
            thingName=meter_address,
            thingTypeName=thing_type,
            attributePayload={"attributes": {PROVIDER_ATTRIBUTE: provider_id}},
        )
        return
    # Re-provisioning (a new certificate) is fine; moving a meter to another
    # provider is not: its readings would start minting for someone else.
    owner = thing.get("attributes", {}).get(PROVIDER_ATTRIBUTE)
    if owner != provider_id:
        raise ProvisioningError(
            f"thing {meter_address} belongs to provider {owner!r}, not {provider_id}"
        )
    if thing.get("thingTypeName") != thing_type:
        raise ProvisioningError(f"thing {meter_address} is not of type {thing_type}")


def _certificate(
    iot: Any, source: CertificateSource, meter_address: str, ca: CertificateAuthority | None
) -> tuple[dict[str, str], bytes, bytes]:
    """(certificateArn/Id, certificate PEM, private key PEM)."""
    if source is CertificateSource.LOCAL_CA:
        if ca is None:
            raise ProvisioningError("a local-ca certificate needs the local CA (--local-ca DIR)")
        issued = ca.issue_client(meter_address)
        response = iot.register_certificate_without_ca(
            certificatePem=issued.certificate_pem.decode("ascii"), status="ACTIVE"
        )
        return (
            {"arn": response["certificateArn"], "id": response["certificateId"]},
            issued.certificate_pem,
            issued.private_key_pem,
        )
    response = iot.create_keys_and_certificate(setAsActive=True)
    return (
        {"arn": response["certificateArn"], "id": response["certificateId"]},
        response["certificatePem"].encode("ascii"),
        response["keyPair"]["PrivateKey"].encode("ascii"),
    )


def _certificate_for_request(
    iot: Any,
    source: CertificateSource,
    meter_address: str,
    ca: CertificateAuthority | None,
    csr_pem: bytes,
) -> tuple[dict[str, str], bytes]:
    """(certificateArn/Id, certificate PEM) for a device's own key."""
    if source is CertificateSource.LOCAL_CA:
        if ca is None:
            raise ProvisioningError("a local-ca certificate needs the local CA (--local-ca DIR)")
        try:
            certificate_pem = ca.sign_client_request(csr_pem, meter_address)
        except CertificateAuthorityError as exc:
            raise ProvisioningError(f"the device request is refused: {exc}") from exc
        response = iot.register_certificate_without_ca(
            certificatePem=certificate_pem.decode("ascii"), status="ACTIVE"
        )
        return {"arn": response["certificateArn"], "id": response["certificateId"]}, (
            certificate_pem
        )
    response = iot.create_certificate_from_csr(
        certificateSigningRequest=csr_pem.decode("ascii"), setAsActive=True
    )
    return {"arn": response["certificateArn"], "id": response["certificateId"]}, response[
        "certificatePem"
    ].encode("ascii")


def provision_meter(
    iot: Any,
    *,
    meter_address: str,
    provider_id: str,
    out_dir: Path,
    stack_name: str = DEFAULT_STACK_NAME,
    region: str,
    account_id: str,
    certificate_source: CertificateSource = CertificateSource.LOCAL_CA,
    ca: CertificateAuthority | None = None,
    ca_file: Path | None = None,
    endpoint: str | None = None,
    port: int | None = None,
    meter_key: SigningKey | None = None,
    device: DeviceRequest | None = None,
    force: bool = False,
) -> MeterCredentials:
    """Provision one meter (see the module docstring) and write its credentials directory.

    ``iot`` is a boto3 IoT client (AWS or moto). ``region`` and ``account_id`` resolve
    the policy document when the policy must be created (offline); ``ca_file`` is the CA a
    meter trusts for the broker (offline: the local CA's, written by default).
    ``device``: the meter made its own keys; only its public material is used, and
    no private key is made or written here.
    """
    certificate_source = CertificateSource(certificate_source)
    if not is_valid_meter_address(meter_address):
        raise ProvisioningError(f"{meter_address!r} is not a meter address")
    if device is not None and meter_key is not None:
        raise ProvisioningError("a meter with its own keys gets no key from provisioning")
    if device is not None and not signing.is_public_key_hex(device.public_key):
        raise ProvisioningError("the device's public key is not 32 bytes of hex")
    if (out_dir / METER_FILE).exists() and not force:
        raise ProvisioningError(f"{out_dir} already holds a meter (use --force to replace it)")
    names = create_iot_resources(iot, stack_name, region, account_id)
    _ensure_thing(iot, meter_address, names["thing_type"], provider_id)
    private_key_pem: bytes | None = None
    if device is None:
        certificate, certificate_pem, private_key_pem = _certificate(
            iot, certificate_source, meter_address, ca
        )
    else:
        certificate, certificate_pem = _certificate_for_request(
            iot, certificate_source, meter_address, ca, device.csr_pem
        )
    iot.attach_policy(policyName=names["policy"], target=certificate["arn"])
    iot.attach_thing_principal(thingName=meter_address, principal=certificate["arn"])

    if endpoint is None:
        if certificate_source is CertificateSource.LOCAL_CA:
            endpoint = DEFAULT_HOST
        else:
            endpoint = str(iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"])
    if device is not None:
        public_key = signing.normalise_hex(device.public_key)
    else:
        meter_key = meter_key or SigningKey.generate()
        public_key = bytes(meter_key.verify_key).hex()
    credentials = MeterCredentials(
        meter_address=meter_address,
        provider_id=provider_id,
        thing_name=meter_address,
        topic=readings.topic_for(meter_address),
        endpoint=endpoint,
        port=DEFAULT_PORT if port is None else port,
        certificate_id=certificate["id"],
        certificate_arn=certificate["arn"],
        public_key=public_key,
        stack_name=stack_name,
        directory=out_dir,
    )
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_file(credentials.certificate_path, certificate_pem, mode=0o644)
    if private_key_pem is not None:
        write_file(credentials.private_key_path, private_key_pem, mode=0o600)
    trusted = ca_file.read_bytes() if ca_file is not None else ca.certificate_pem if ca else None
    if trusted is not None:
        write_file(out_dir / CA_FILE, trusted, mode=0o644)
    if meter_key is not None:
        write_file(out_dir / SEED_FILE, (bytes(meter_key).hex() + "\n").encode(), mode=0o600)
    # state.json (the meter client's counter) stays: re-provisioning a meter gives it
    # new keys, but its cumulative register does not start again from zero.
    # meter.json last: its presence means the directory is complete.
    write_file(
        out_dir / METER_FILE,
        (json.dumps(credentials.document(), indent=2, sort_keys=True) + "\n").encode(),
        mode=0o644,
    )
    return credentials


def register_meter_key(
    api: MarketplaceClient,
    owner: Signer,
    credentials: MeterCredentials,
    registration: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Register the meter's public key with its provider, signed by the provider's owner.

    An existing provider gets the new key (``energy.updateProvider``, key rotation);
    a new one is registered with ``registration`` (the other registerProvider fields).
    """
    expected = provider_id_for(owner.account, credentials.meter_address)
    if expected != credentials.provider_id:
        raise ProvisioningError(
            f"{owner.account} does not own provider {credentials.provider_id} of this meter"
        )
    try:
        api.call("energy.getProvider", {"provider_id": credentials.provider_id})
    except RpcError as exc:
        if exc.reason != "not_found":
            raise
        if registration is None:
            raise ProvisioningError(
                f"provider {credentials.provider_id} is not registered; "
                "give its registration (--registration FILE)"
            ) from exc
        params = {
            **registration,
            "meter_address": credentials.meter_address,
            "meter_public_key": credentials.public_key,
        }
        result: dict[str, Any] = api.register_provider(owner, **params)
        return result
    updated: dict[str, Any] = api.call(
        "energy.updateProvider",
        {
            "provider_id": credentials.provider_id,
            "updates": {"meter_public_key": credentials.public_key},
        },
        owner,
    )
    return updated


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m iot.provision",
        description="Provision a meter as an IoT thing and write its credentials directory.",
    )
    parser.add_argument("--meter-address", required=True, help="thing name = MQTT client id")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--owner", help="the provider's owner account (derives the provider id)")
    who.add_argument("--provider-id", help="the provider id, if not derived from --owner")
    parser.add_argument("--out", type=Path, required=True, help="credentials directory to write")
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME)
    parser.add_argument(
        "--certificate-source",
        type=CertificateSource,
        choices=list(CertificateSource),
        default=CertificateSource.LOCAL_CA,
        help="local-ca (offline, default) or aws (create_keys_and_certificate)",
    )
    parser.add_argument("--local-ca", type=Path, help="state directory of the local CA")
    parser.add_argument("--ca-file", type=Path, help="CA certificate the meter trusts")
    parser.add_argument("--endpoint", help="MQTT host (default: 127.0.0.1, or IoT's ATS endpoint)")
    parser.add_argument("--port", type=int, help=f"MQTT port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--iot-endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL_IOT"),
        help="IoT API endpoint, e.g. the moto server (env AWS_ENDPOINT_URL_IOT)",
    )
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument(
        "--device-request",
        type=Path,
        metavar="DIR",
        help=f"the meter made its own keys: its {CSR_FILE} and {PUBLIC_KEY_FILE} are here "
        "(python -m iot.device_keys); no private key is made",
    )
    parser.add_argument("--force", action="store_true", help="replace existing credentials")
    register = parser.add_argument_group("register the meter key with the provider")
    register.add_argument("--api-url", help="JSON-RPC URL, e.g. http://127.0.0.1:8000/rpc")
    register.add_argument("--owner-key-file", type=Path, help="file with the owner's seed (hex)")
    register.add_argument(
        "--registration",
        type=Path,
        help="JSON file of registerProvider fields, for a provider not registered yet",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import boto3

    args = parse_args(argv)
    provider_id = args.provider_id or provider_id_for(args.owner, args.meter_address)
    if args.api_url and not (args.owner and args.owner_key_file):
        print("error: --api-url needs --owner and --owner-key-file", file=sys.stderr)
        return 2
    try:
        ca = (
            CertificateAuthority.load_or_create(args.local_ca)
            if args.local_ca is not None
            else None
        )
        iot = boto3.client("iot", region_name=args.region, endpoint_url=args.iot_endpoint_url)
        # moto serves every service on one endpoint; in AWS both URLs are the default.
        sts = boto3.client("sts", region_name=args.region, endpoint_url=args.iot_endpoint_url)
        account_id = str(sts.get_caller_identity()["Account"])
        credentials = provision_meter(
            iot,
            meter_address=args.meter_address,
            provider_id=provider_id,
            out_dir=args.out,
            stack_name=args.stack_name,
            region=args.region,
            account_id=account_id,
            certificate_source=args.certificate_source,
            ca=ca,
            ca_file=args.ca_file,
            endpoint=args.endpoint,
            port=args.port,
            device=DeviceRequest.load(args.device_request) if args.device_request else None,
            force=args.force,
        )
        print(
            f"provisioned {credentials.meter_address} for {credentials.provider_id}: "
            f"certificate {credentials.certificate_id}, credentials in {credentials.directory}"
        )
        if args.api_url:
            owner = Signer(args.owner, keyfiles.read_key(args.owner_key_file))
            registration = (
                json.loads(args.registration.read_text(encoding="utf-8"))
                if args.registration
                else None
            )
            api = MarketplaceClient.over_http(args.api_url)
            provider = register_meter_key(api, owner, credentials, registration)
            print(f"meter key registered with provider {provider.get('provider_id')}")
    except (ProvisioningError, RpcError, ClientError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
