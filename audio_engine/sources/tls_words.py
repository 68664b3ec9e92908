"""yt-dlp's and Python's internal error text, said in words for users.

yt-dlp passes Python's ``ssl`` errors on as they are::

    Unable to download webpage: [SSL: WRONG_VERSION_NUMBER] wrong version number
    (_ssl.c:1006) (caused by SSLError('[SSL: WRONG_VERSION_NUMBER] wrong version
    number (_ssl.c:1006)')); please report this issue on https://..., filling out
    the appropriate issue template. Confirm you are on the latest version using yt-dlp -U

and users (the Node front shows the message as it is) see OpenSSL's reason codes,
a C source file and line, and an invitation to report a bug to yt-dlp.
``plain_words`` keeps what comes before the TLS part ("Unable to download
webpage: ") and says the rest in a sentence; it drops yt-dlp's bug-report
boilerplate from any message.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["plain_words"]

#: The start of Python's ssl error text: ``[SSL: REASON_CODE]`` or ``[SSL]``.
_SSL_TAG = re.compile(r"\[SSL(?:: ([A-Z0-9_]+))?\]")
#: What else marks an ssl error when the tag is missing.
_SSL_HINTS = ("_ssl.c", "SSLError", "SSLCertVerificationError", "SSLZeroReturnError")
#: Detail after "certificate verify failed: " (self-signed, expired, hostname mismatch).
_VERIFY_DETAIL = re.compile(r"certificate verify failed: ([^()']+?)\s*(?:\(_ssl\.c:\d+\)|$|\))")
#: yt-dlp's request to report the error as a bug (it names its own tracker).
_REPORT = re.compile(r";?\s*please report this issue on .*$", re.DOTALL)
#: yt-dlp's wrapping of the underlying exception.
_CAUSED_BY = re.compile(r"\s*\(caused by .*$", re.DOTALL)

#: OpenSSL reason codes, said for a listener.
_REASONS: Final = {
    "CERTIFICATE_VERIFY_FAILED": "the site's certificate could not be verified",
    "WRONG_VERSION_NUMBER": "the server does not speak HTTPS at that address",
    "UNEXPECTED_EOF_WHILE_READING": "the server closed the connection during the secure "
                                    "handshake",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the server only offers an outdated version of TLS",
    "UNSUPPORTED_PROTOCOL": "the server only offers an outdated version of TLS",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server and the engine could not agree on "
                                     "encryption",
    "TLSV1_ALERT_INTERNAL_ERROR": "the server failed the secure handshake",
    "TLSV1_UNRECOGNIZED_NAME": "the server does not serve that host name over HTTPS",
}
_GENERIC = "the secure connection (HTTPS) to the site failed"


def plain_words(message: str) -> str:
    """*message* without Python's ssl internals and yt-dlp's bug-report text
    (unchanged when it has neither)."""
    message = _REPORT.sub("", message)
    tag = _SSL_TAG.search(message)
    hint = min((i for i in (message.find(h) for h in _SSL_HINTS) if i >= 0), default=-1)
    if tag is None and hint < 0:
        return message
    if tag is not None:
        start = tag.start()
    else:  # the ssl text is the clause that holds the hint: from its ": " on
        colon = message.rfind(": ", 0, hint)
        start = colon + 2 if colon >= 0 else 0
    code = tag.group(1) if tag is not None else None
    words = _REASONS.get(code or "", _GENERIC)
    if code == "CERTIFICATE_VERIFY_FAILED" and (detail := _VERIFY_DETAIL.search(message)):
        words = f"{words} ({detail.group(1).strip()})"
    head = _CAUSED_BY.sub("", message[:start]).rstrip(" :;,(")
    return f"{head}: {words}" if head else words
