"""Certificates for OPC UA security, made on this PC with `cryptography` (no network, no
CA): a self-signed RSA-2048 certificate with the application URI and the host names the
OPC UA specification asks for, kept in the data folder and reused at every start."""
from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from pathlib import Path

from engine.errors import InspectError


def make_certificate(cert: Path, key: Path, name: str, uri: str, hosts: list[str],
                     days: int = 3650) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    pkey = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "inspection station")])
    alt: list = [x509.UniformResourceIdentifier(uri)]
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    now = dt.datetime.now(dt.timezone.utc)
    c = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
         .public_key(pkey.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.SubjectAlternativeName(alt), critical=False)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                      key_encipherment=True, data_encipherment=True,
                                      key_agreement=False, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                               ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
         .sign(pkey, hashes.SHA256()))
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(pkey.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    key.chmod(0o600)                          # the private key: this account only
    cert.write_bytes(c.public_bytes(serialization.Encoding.DER))


def server_certificate(folder: Path, host: str, uri: str) -> tuple[Path, Path]:
    """The station's certificate and key (made once, then reused)."""
    folder = Path(folder)
    cert, key = folder / "opcua_server_cert.der", folder / "opcua_server_key.pem"
    if cert.is_file() and key.is_file():
        return cert, key
    try:
        make_certificate(cert, key, "inspection station OPC UA server", uri,
                         sorted({host, socket.gethostname(), "localhost"}))
    except OSError as exc:
        raise InspectError(f"The OPC UA certificate could not be written to {folder} ({exc}).") from exc
    return cert, key
