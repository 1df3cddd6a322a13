"""Loaded at start-up by any Python process whose PYTHONPATH holds this folder (see tests/conftest.py).

Blocks every outbound connection and name lookup that is not loopback, and
appends each attempt to the file named by ASSAY_NETGUARD_LOG, so a test can
prove that a whole run of Assay never reached off the machine.
"""

import os
import socket

_LOG = os.environ.get("ASSAY_NETGUARD_LOG")
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost", ""}


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    return text in _LOOPBACK_NAMES or text.startswith("127.") or text == "0.0.0.0"


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as handle:
            handle.write(what + "\n")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address):  # type: ignore[no-untyped-def]
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        _record(f"connect {address!r}")
        raise OSError(f"netguard: outbound connection to {address!r} blocked")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):  # type: ignore[no-untyped-def]
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        _record(f"connect_ex {address!r}")
        return 111
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if not _is_loopback(host):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"netguard: lookup of {host!r} blocked")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo
