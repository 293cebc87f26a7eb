"""Certificates for the TLS tests, made with ``cryptography`` (pinned in
python/requirements-test.txt): a cluster CA with one certificate per role
signed by it, as a Dask deployment with its own CA has, and a stranger CA
whose certificates the cluster must refuse."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Issued:
    """A certificate and its key, written as PEM files."""

    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _builder(subject: str, issuer: str, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


class CertAuthority:
    """A CA that signs one certificate per Dask role."""

    def __init__(self, directory: Path, name: str = "dask-test-ca"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = (
            _builder(name, name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = self.dir / f"{name}.pem"
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, role: str, *, ec_key: bool = False, key_in_cert: bool = False) -> Issued:
        """A certificate for ``role`` (usable as TLS server and client, for
        127.0.0.1 and localhost). ``key_in_cert``: the key is appended to the
        certificate file (and ``key`` names that same file)."""
        key = (
            ec.generate_private_key(ec.SECP256R1())
            if ec_key
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        cert = (
            _builder(f"dask-{role}", self.name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = self.dir / f"{self.name}-{role}.crt"
        key_path = self.dir / f"{self.name}-{role}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        if key_in_cert:
            with cert_path.open("ab") as f:
                f.write(key_path.read_bytes())
            key_path = cert_path
        return Issued(cert_path, key_path)


def self_signed(directory: Path, name: str = "dask-internal") -> Issued:
    """One self-signed certificate used as CA file and certificate by every
    role, as ``distributed.Security.temporary()`` makes it (no CA flag)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return Issued(cert_path, key_path)


def worker_flags(ca_file, issued) -> list[str]:
    """``dask worker`` (or scheduler) flags for a certificate of this CA."""
    return ["--tls-ca-file", str(ca_file), "--tls-cert", str(issued.cert),
            "--tls-key", str(issued.key)]


def client_security(ca_file, issued):
    """A client's ``distributed.Security`` with a certificate of this CA."""
    from distributed import Security

    return Security(
        tls_ca_file=str(ca_file),
        tls_client_cert=str(issued.cert),
        tls_client_key=str(issued.key),
        require_encryption=True,
    )
