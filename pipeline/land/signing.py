"""Signed manifests: every commit to the ledger is signed with the installation's Ed25519 key.

A hash chain proves the manifests were not changed after the fact, by someone who could not
also rewrite every manifest after the changed one. A signature proves who wrote each one: a
forged manifest appended at the end, a head re-hashed after a file was edited, a chain spliced
together from other lakes' manifests, none of them carry a valid signature of a trusted key.

The private key lives outside the lake (`signing.key_file`, created with mode 0600 on first
use); each manifest carries the key's id and the signature over the manifest's own bytes (the
JSON without its `signature` member). `assay verify` trusts the installation's own key and
those named in `signing.trusted_keys` (public keys, PEM: a rotated key, another site's).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.core.hashing import sha256_bytes

ALGORITHM = "ed25519"


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """The bytes a manifest is written as, and signed as (without its signature)."""
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(unsigned, indent=1, sort_keys=True).encode("utf-8")


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_bytes(raw)[:16]


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    def sign(self, document: dict[str, Any]) -> dict[str, Any]:
        """The document with its `signature` member."""
        value = self.private.sign(canonical_bytes(document))
        signature = {"algorithm": ALGORITHM, "key_id": self.key_id, "value": base64.b64encode(value).decode()}
        return {**document, "signature": signature}


def load_or_create(path: Path) -> Signer:
    """The installation's signing key; created (mode 0600, in a 0700 folder) when there is none."""
    path = path.expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return Signer(key)


def load_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.expanduser().read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def public_pem(signer: Signer) -> bytes:
    return signer.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def signature_problem(document: dict[str, Any], trusted: dict[str, Ed25519PublicKey]) -> str | None:
    """Why a manifest's signature does not hold (None: it does)."""
    signature = document.get("signature")
    if not isinstance(signature, dict):
        return "not signed"
    public = trusted.get(str(signature.get("key_id")))
    if public is None:
        return f"signed by key {signature.get('key_id')}, which is not trusted here"
    try:
        public.verify(base64.b64decode(str(signature.get("value"))), canonical_bytes(document))
    except (InvalidSignature, ValueError):
        return "its signature does not match its content"
    return None
