"""Provisioning a meter against moto: thing, type, certificate, policy and attachments."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from moto import mock_aws

from chalicelib.domain import readings
from chalicelib.domain.providers import provider_id_for
from infra.emulation import (
    OFFLINE_ACCOUNT_ID,
    meter_policy_document,
    meter_policy_name,
    meter_thing_type_name,
)
from iot import provision
from iot.ca import CertificateAuthority, CertificateAuthorityError
from iot.device_keys import generate_device_keys
from iot.provision import (
    CertificateSource,
    DeviceRequest,
    MeterCredentials,
    ProvisioningError,
    provision_meter,
)

STACK = "energy-marketplace-test"
REGION = "us-east-1"
PROVIDER_ID = provider_id_for("alice.theblock", "solar_meter_101")


@pytest.fixture
def iot(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("iot", region_name=REGION)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path_factory.mktemp("ca"))


def _provision(iot: Any, ca: CertificateAuthority, out: Path, **overrides: Any) -> MeterCredentials:
    arguments: dict[str, Any] = {
        "meter_address": "solar_meter_101",
        "provider_id": PROVIDER_ID,
        "out_dir": out,
        "stack_name": STACK,
        "region": REGION,
        "account_id": OFFLINE_ACCOUNT_ID,
        "ca": ca,
        "port": 18883,
    }
    arguments.update(overrides)
    return provision_meter(iot, **arguments)


def test_meter_becomes_a_thing_of_the_meter_type_owned_by_its_provider(
    iot: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    _provision(iot, ca, tmp_path / "meter")

    thing = iot.describe_thing(thingName="solar_meter_101")
    assert thing["thingTypeName"] == meter_thing_type_name(STACK) == f"{STACK}-meter"
    assert thing["attributes"] == {"provider_id": PROVIDER_ID}
    thing_type = iot.describe_thing_type(thingTypeName=f"{STACK}-meter")
    assert thing_type["thingTypeProperties"]["searchableAttributes"] == ["provider_id"]


def test_certificate_comes_from_the_local_ca_is_active_and_names_the_meter(
    iot: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    credentials = _provision(iot, ca, tmp_path / "meter")

    description = iot.describe_certificate(certificateId=credentials.certificate_id)
    registered = description["certificateDescription"]
    assert registered["status"] == "ACTIVE"
    assert registered["certificateArn"] == credentials.certificate_arn
    certificate = x509.load_pem_x509_certificate(registered["certificatePem"].encode())
    assert credentials.certificate_path.read_bytes() == certificate.public_bytes(Encoding.PEM)
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == "solar_meter_101"
    assert certificate.issuer == ca.certificate.subject
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    certificate.verify_directly_issued_by(ca.certificate)  # raises if another key signed it


def test_policy_is_attached_to_the_certificate_and_the_certificate_to_the_thing(
    iot: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    credentials = _provision(iot, ca, tmp_path / "meter")

    principals = iot.list_thing_principals(thingName="solar_meter_101")["principals"]
    assert principals == [credentials.certificate_arn]
    policies = iot.list_attached_policies(target=credentials.certificate_arn)["policies"]
    assert [p["policyName"] for p in policies] == [meter_policy_name(STACK)]


def test_policy_is_the_templates_document_with_its_policy_variables(
    iot: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    _provision(iot, ca, tmp_path / "meter")

    stored = json.loads(iot.get_policy(policyName=meter_policy_name(STACK))["policyDocument"])
    assert stored == meter_policy_document(STACK, REGION, OFFLINE_ACCOUNT_ID)
    by_action = {statement["Action"]: statement for statement in stored["Statement"]}
    assert set(by_action) == {"iot:Connect", "iot:Publish"}
    arn = f"arn:aws:iot:{REGION}:{OFFLINE_ACCOUNT_ID}"
    thing_name = "${iot:Connection.Thing.ThingName}"
    assert by_action["iot:Connect"]["Resource"] == [f"{arn}:client/{thing_name}"]
    assert by_action["iot:Publish"]["Resource"] == [f"{arn}:topic/{readings.topic_for(thing_name)}"]


def test_credentials_directory_holds_what_the_meter_needs_and_keeps_keys_private(
    iot: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    out = tmp_path / "meter"
    credentials = _provision(iot, ca, out)

    loaded = MeterCredentials.load(out)
    assert loaded == credentials
    assert loaded.topic == readings.topic_for("solar_meter_101")
    assert (loaded.endpoint, loaded.port) == ("127.0.0.1", 18883)
    assert loaded.ca_path is not None and loaded.ca_path.read_bytes() == ca.certificate_pem
    assert bytes(loaded.signing_key().verify_key).hex() == loaded.public_key
    for private in (provision.PRIVATE_KEY_FILE, provision.SEED_FILE):
        assert stat.S_IMODE((out / private).stat().st_mode) == 0o600, private


def test_aws_mode_lets_iot_make_the_certificate_and_finds_the_ats_endpoint(
    iot: Any, tmp_path: Path
) -> None:
    credentials = provision_meter(
        iot,
        meter_address="wind_meter_202",
        provider_id=PROVIDER_ID,
        out_dir=tmp_path / "meter",
        stack_name=STACK,
        region=REGION,
        account_id=OFFLINE_ACCOUNT_ID,
        certificate_source=CertificateSource.AWS,
    )

    # moto makes up a new ATS host name on every call; AWS has one per account.
    assert credentials.endpoint.endswith(f"-ats.iot.{REGION}.amazonaws.com")
    assert credentials.ca_path is None  # AWS IoT's CA is in the system trust store
    assert iot.list_thing_principals(thingName="wind_meter_202")["principals"] == [
        credentials.certificate_arn
    ]
    assert credentials.private_key_path.read_text().startswith("-----BEGIN")


def test_a_meter_cannot_be_moved_to_another_provider(
    iot: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    _provision(iot, ca, tmp_path / "first")

    with pytest.raises(ProvisioningError, match="belongs to provider"):
        _provision(
            iot,
            ca,
            tmp_path / "second",
            provider_id=provider_id_for("mallory.theblock", "solar_meter_101"),
        )
    assert len(iot.list_thing_principals(thingName="solar_meter_101")["principals"]) == 1


def test_existing_credentials_are_replaced_only_when_forced(
    iot: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    first = _provision(iot, ca, tmp_path / "meter")
    with pytest.raises(ProvisioningError, match="already holds a meter"):
        _provision(iot, ca, tmp_path / "meter")

    second = _provision(iot, ca, tmp_path / "meter", force=True)

    assert second.certificate_id != first.certificate_id
    assert second.public_key != first.public_key
    assert MeterCredentials.load(tmp_path / "meter") == second


@pytest.mark.parametrize("address", ["a/b", "meter+", "#", "x", "meter.with.dots"])
def test_addresses_that_cannot_be_a_topic_level_are_refused(
    iot: Any, ca: CertificateAuthority, tmp_path: Path, address: str
) -> None:
    with pytest.raises(ProvisioningError, match="not a meter address"):
        _provision(iot, ca, tmp_path / "meter", meter_address=address)
    assert iot.list_things()["things"] == []


def test_the_command_provisions_against_a_moto_server(
    aws_credentials: None, moto_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "meter"
    exit_code = provision.main(
        [
            "--meter-address",
            "hydro_meter_303",
            "--owner",
            "carol.theblock",
            "--out",
            str(out),
            "--stack-name",
            "stack-cli",
            "--local-ca",
            str(tmp_path / "ca"),
            "--port",
            "18884",
            "--iot-endpoint-url",
            moto_server,
        ]
    )

    assert exit_code == 0, capsys.readouterr()
    credentials = MeterCredentials.load(out)
    assert credentials.provider_id == provider_id_for("carol.theblock", "hydro_meter_303")
    client = boto3.client("iot", endpoint_url=moto_server, region_name=REGION)
    assert client.describe_thing(thingName="hydro_meter_303")["attributes"] == {
        "provider_id": credentials.provider_id
    }
    assert "provisioned hydro_meter_303" in capsys.readouterr().out


# -- keys born on the meter ----------------------------------------------------------------


def _public_files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


def test_a_meter_with_its_own_keys_is_provisioned_from_public_material_only(
    iot: Any, ca: CertificateAuthority, tmp_path: Path
) -> None:
    device_dir = tmp_path / "on-the-meter"
    request = generate_device_keys(device_dir, "solar_meter_101")
    handed_over = tmp_path / "handed-over"  # what leaves the meter, and nothing else
    handed_over.mkdir()
    for name in (provision.CSR_FILE, provision.PUBLIC_KEY_FILE):
        (handed_over / name).write_bytes((device_dir / name).read_bytes())
    assert DeviceRequest.load(handed_over) == request

    issued_dir = tmp_path / "issued"
    credentials = _provision(iot, ca, issued_dir, device=DeviceRequest.load(handed_over))

    issued = _public_files(issued_dir)
    assert set(issued) == {provision.CERTIFICATE_FILE, provision.CA_FILE, provision.METER_FILE}
    assert not any(b"PRIVATE KEY" in content for content in issued.values())
    assert credentials.public_key == request.public_key
    certificate = x509.load_pem_x509_certificate(issued[provision.CERTIFICATE_FILE])
    csr = x509.load_pem_x509_csr(request.csr_pem)
    assert certificate.public_key() == csr.public_key()  # the meter's own TLS key
    cn = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "solar_meter_101"
    registered = iot.describe_certificate(certificateId=credentials.certificate_id)
    assert registered["certificateDescription"]["status"] == "ACTIVE"
    assert iot.list_thing_principals(thingName="solar_meter_101")["principals"] == [
        credentials.certificate_arn
    ]

    # The meter puts the issued files beside its keys: a credentials directory.
    for name, content in issued.items():
        (device_dir / name).write_bytes(content)
    on_meter = MeterCredentials.load(device_dir)
    assert bytes(on_meter.signing_key().verify_key).hex() == request.public_key


def test_the_local_ca_refuses_a_request_for_another_meter_or_a_forged_one(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    request = generate_device_keys(tmp_path / "meter", "solar_meter_101")
    with pytest.raises(CertificateAuthorityError, match="names CN"):
        ca.sign_client_request(request.csr_pem, "solar_meter_999")
    # Another key in the request than the one that signed it:
    csr = x509.load_pem_x509_csr(request.csr_pem)
    other = ec.generate_private_key(ec.SECP256R1())
    forged = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(csr.subject)
        .sign(other, hashes.SHA256())
    )
    body = bytearray(forged.public_bytes(Encoding.DER))
    original_key = csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    forged_key = other.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    start = bytes(body).index(forged_key)
    body[start : start + len(forged_key)] = original_key  # the victim's key, Mallory's signature
    tampered = x509.load_der_x509_csr(bytes(body)).public_bytes(Encoding.PEM)
    with pytest.raises(CertificateAuthorityError, match="signature does not verify"):
        ca.sign_client_request(tampered, "solar_meter_101")
    with pytest.raises(CertificateAuthorityError, match="not a PEM"):
        ca.sign_client_request(b"not a request", "solar_meter_101")


def test_aws_mode_has_iot_sign_the_meters_request(iot: Any, tmp_path: Path) -> None:
    request = generate_device_keys(tmp_path / "meter", "wind_meter_202")
    credentials = provision_meter(
        iot,
        meter_address="wind_meter_202",
        provider_id=PROVIDER_ID,
        out_dir=tmp_path / "issued",
        stack_name=STACK,
        region=REGION,
        account_id=OFFLINE_ACCOUNT_ID,
        certificate_source=CertificateSource.AWS,
        device=request,
    )
    assert not credentials.private_key_path.exists()
    assert not (tmp_path / "issued" / provision.SEED_FILE).exists()
    assert iot.list_thing_principals(thingName="wind_meter_202")["principals"] == [
        credentials.certificate_arn
    ]


def test_device_keys_are_made_once_and_kept_private(tmp_path: Path) -> None:
    generate_device_keys(tmp_path / "meter", "solar_meter_101")
    for private in (provision.PRIVATE_KEY_FILE, provision.SEED_FILE):
        assert stat.S_IMODE((tmp_path / "meter" / private).stat().st_mode) == 0o600
    with pytest.raises(ProvisioningError, match="already holds"):
        generate_device_keys(tmp_path / "meter", "solar_meter_101")
