"""A local certificate authority: the offline stand-in for the CA behind AWS IoT certificates.

moto's own IoT certificates are each signed by a throwaway key, so no TLS
server can verify them. Offline, one CA kept in a state directory issues the
broker's server certificate and every meter's client certificate; the meter
certificates are then registered into moto (``register_certificate_without_ca``)
so the IoT registry holds the very certificate the broker checks.

Keys are ECDSA P-256 (AWS IoT accepts them for device certificates, and they
are quick to generate); private keys are written PKCS#8 PEM, mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_KEY_FILE: Final = "ca.key"
CA_CERT_FILE: Final = "ca.pem"
CA_COMMON_NAME: Final = "Energy Marketplace local IoT CA"
CA_VALIDITY: Final = datetime.timedelta(days=3650)
LEAF_VALIDITY: Final = datetime.timedelta(days=825)
# Clocks of the machines that check a certificate may lag ours a little.
BACKDATE: Final = datetime.timedelta(minutes=5)


class CertificateAuthorityError(RuntimeError):
    """The CA's state directory is unusable."""


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key, both PEM."""

    certificate_pem: bytes
    private_key_pem: bytes

    @property
    def common_name(self) -> str:
        certificate = x509.load_pem_x509_certificate(self.certificate_pem)
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value)

    def write(self, certificate_path: Path, private_key_path: Path) -> None:
        write_file(certificate_path, self.certificate_pem, mode=0o644)
        write_file(private_key_path, self.private_key_pem, mode=0o600)


def write_file(path: Path, content: bytes, *, mode: int) -> None:
    """Write ``content`` atomically with ``mode`` (a private key is never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "wb") as output:
            output.write(content)
            output.flush()
            os.fsync(output.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Every key here signs (ECDSA) and none enciphers; the CA's also signs
    certificates and CRLs, a leaf's also agrees keys (ECDHE)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class CertificateAuthority:
    """The CA whose key and certificate live in ``directory`` (created on first use)."""

    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate):
        self.directory = directory.resolve()
        self._key = key
        self.certificate = cert

    @classmethod
    def load_or_create(cls, directory: Path) -> CertificateAuthority:
        key_path = directory / CA_KEY_FILE
        cert_path = directory / CA_CERT_FILE
        if key_path.exists() and cert_path.exists():
            try:
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
                certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            except ValueError as exc:
                raise CertificateAuthorityError(f"{directory} holds no usable CA: {exc}") from exc
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise CertificateAuthorityError(f"{key_path} is not an EC private key")
            return cls(directory, key, certificate)
        if key_path.exists() or cert_path.exists():
            raise CertificateAuthorityError(
                f"{directory} holds only half a CA ({CA_KEY_FILE}, {CA_CERT_FILE}): remove it"
            )
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_file(key_path, _key_pem(key), mode=0o600)
        write_file(cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return cls(directory, key, certificate)

    @property
    def certificate_path(self) -> Path:
        return self.directory / CA_CERT_FILE

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue_server(self, common_name: str = "localhost") -> IssuedCertificate:
        """A TLS server certificate for the local broker: valid for localhost and 127.0.0.1."""
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
        return self._issue(common_name, ExtendedKeyUsageOID.SERVER_AUTH, names)

    def issue_client(self, common_name: str) -> IssuedCertificate:
        """A TLS client certificate whose subject CN is the MQTT identity (a meter address)."""
        return self._issue(common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def sign_client_request(self, csr_pem: bytes, common_name: str) -> bytes:
        """A client certificate (PEM) for the key of a device's certificate signing
        request: the device keeps its private key, the CA never sees it.

        Only the request's public key is used, and only once its self-signature
        proves the device holds the key. The subject must name ``common_name``
        (the meter address), and nothing else the request asks for (extensions,
        other names) is copied: the CA decides what a meter certificate says, as
        IoT's CreateCertificateFromCsr does.
        """
        try:
            request = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CertificateAuthorityError(
                f"not a PEM certificate signing request: {exc}"
            ) from exc
        if not request.is_signature_valid:
            raise CertificateAuthorityError("the request's signature does not verify")
        names = [str(n.value) for n in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [common_name]:
            raise CertificateAuthorityError(
                f"the request names CN {names!r}; a meter certificate names {common_name!r}"
            )
        public_key = request.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise CertificateAuthorityError("the request's key is neither EC nor RSA")
        certificate = self._certificate(
            common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [], public_key
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def _issue(
        self,
        common_name: str,
        usage: x509.ObjectIdentifier,
        alternative_names: list[x509.GeneralName],
    ) -> IssuedCertificate:
        key = _new_key()
        certificate = self._certificate(common_name, usage, alternative_names, key.public_key())
        return IssuedCertificate(
            certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key)
        )

    def _certificate(
        self,
        common_name: str,
        usage: x509.ObjectIdentifier,
        alternative_names: list[x509.GeneralName],
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    ) -> x509.Certificate:
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + LEAF_VALIDITY, self.certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
        )
        if alternative_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(alternative_names), critical=False
            )
        return builder.sign(self._key, hashes.SHA256())
