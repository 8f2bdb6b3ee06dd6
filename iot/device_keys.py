"""What a meter does on itself before it is provisioned: make its keys, ask for a certificate.

Firmware would do this in its secure element; this module does the same on a
host that plays the meter (the simulator, tests, a bench device)::

    python -m iot.device_keys --meter-address solar_meter_001 --out /var/lib/meter

It writes, in ``--out``:

- ``private.key``: the TLS client key, ECDSA P-256, PKCS#8 PEM (0600);
- ``meter.seed``: the Ed25519 seed that signs readings, hex (0600);
- ``certificate.csr``: a PKCS#10 request for the TLS key, CN = the meter address;
- ``meter.pub``: the Ed25519 public key, hex.

Only the last two go to whoever provisions the meter (``python -m iot.provision
--device-request DIR``): the private files never leave the meter. The issued
``certificate.pem``, ``ca.pem`` and ``meter.json`` are then put beside them, and
the directory is a credentials directory ``python -m iot.meter`` runs from.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nacl.signing import SigningKey

from chalicelib.domain.providers import is_valid_meter_address
from iot.ca import write_file
from iot.provision import (
    CSR_FILE,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    SEED_FILE,
    DeviceRequest,
    ProvisioningError,
)


def generate_device_keys(directory: Path, meter_address: str) -> DeviceRequest:
    """Make the meter's keys in ``directory`` and return the request it hands over."""
    if not is_valid_meter_address(meter_address):
        raise ProvisioningError(f"{meter_address!r} is not a meter address")
    if (directory / PRIVATE_KEY_FILE).exists() or (directory / SEED_FILE).exists():
        # New keys would orphan the certificate and the registered key of the old ones.
        raise ProvisioningError(f"{directory} already holds a meter's keys")
    tls_key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, meter_address)]))
        .sign(tls_key, hashes.SHA256())
    )
    reading_key = SigningKey.generate()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_file(
        directory / PRIVATE_KEY_FILE,
        tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    write_file(directory / SEED_FILE, (bytes(reading_key).hex() + "\n").encode(), mode=0o600)
    csr_pem = request.public_bytes(serialization.Encoding.PEM)
    public_key = bytes(reading_key.verify_key).hex()
    write_file(directory / CSR_FILE, csr_pem, mode=0o644)
    write_file(directory / PUBLIC_KEY_FILE, (public_key + "\n").encode(), mode=0o644)
    return DeviceRequest(csr_pem, public_key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m iot.device_keys",
        description="Make a meter's keys on the meter, and the request provisioning takes.",
    )
    parser.add_argument("--meter-address", required=True, help="thing name = certificate CN")
    parser.add_argument("--out", type=Path, required=True, help="the meter's key directory")
    args = parser.parse_args(argv)
    try:
        generate_device_keys(args.out, args.meter_address)
    except (ProvisioningError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"keys made in {args.out}; hand over {args.out / CSR_FILE} and "
        f"{args.out / PUBLIC_KEY_FILE} (python -m iot.provision --device-request DIR)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
