"""A throwaway certificate authority and server certificate for TLS tests.

Made with the ``openssl`` command (Debian's, always on the test machines), so
the certificates are real X.509 that Python's ``ssl`` module verifies as it
would any other: the engine loads the server pair, the client trusts the CA.
"""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TestCertificates", "make_certificates"]


@dataclass(frozen=True, slots=True)
class TestCertificates:
    """Paths of a CA certificate and a server certificate and key it signed."""

    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA (hostname ``127.0.0.1``)."""
        return ssl.create_default_context(cafile=str(self.ca))


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> TestCertificates:
    """A CA and a server certificate for ``127.0.0.1`` / ``localhost`` under
    *directory* (1 day, EC P-256: quick to make)."""
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, request, cert = directory / "node.key", directory / "node.csr", directory / "node.pem"
    extensions = directory / "node.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                          "basicConstraints=CA:FALSE\n"
                          "keyUsage=digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=serverAuth\n")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl("req", "-x509", *curve, "-keyout", str(ca_key), "-out", str(ca), "-days", "1",
             "-subj", "/CN=audiogate test CA")
    _openssl("req", "-new", *curve, "-keyout", str(key), "-out", str(request),
             "-subj", "/CN=127.0.0.1")
    _openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(extensions))
    return TestCertificates(ca, cert, key)
