"""Bearer tokens for the HTTP feature server, and the scopes they carry.

Tokens are declared in a YAML (or JSON) document, read from the file named by
``fstore serve --tokens-file`` / ``$FEATURE_STORE_TOKENS_FILE``, or held whole in
``$FEATURE_STORE_TOKENS``::

    restricted_tags: [pii]          # tags that need a scope of the same name (default: [pii])
    tokens:
      - name: scoring-service       # shown in errors and logs; the token itself never is
        token_env: SCORING_TOKEN    # the secret, read from this environment variable...
        scopes: [read, pii]
      - name: stream-ingest
        sha256: 9f86d08…            # ...or only its SHA-256 (hex), so the file holds no secret...
        scopes: [push]
      - name: dashboard
        token: "a-long-random-string"   # ...or the secret itself
        scopes: [read]

Scopes: ``read`` reads features and the catalogue; ``push`` pushes rows; any other scope
is a tag: a feature whose view or column carries a restricted tag is served only to a
token holding a scope of that name (``pii`` for a feature tagged ``pii``).

Presented tokens are hashed (SHA-256) and compared with every declared digest with
:func:`hmac.compare_digest`, all of them every time, so neither the time taken nor any
message depends on how much of a token was right. Only digests are kept in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from feature_store.errors import FeatureStoreError

__all__ = ["Auth", "AuthConfigError", "Token", "TOKENS_ENV", "TOKENS_FILE_ENV", "load_auth"]

TOKENS_ENV = "FEATURE_STORE_TOKENS"
TOKENS_FILE_ENV = "FEATURE_STORE_TOKENS_FILE"
READ, PUSH = "read", "push"
DEFAULT_RESTRICTED_TAGS = ("pii",)
# Shorter secrets can be guessed by anyone who can reach the port.
MIN_TOKEN_LENGTH = 16
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class AuthConfigError(FeatureStoreError):
    """The token document is unusable (names the file or variable, the entry and the key; never a secret)."""


@dataclass(frozen=True)
class Token:
    """One declared token: its name, the SHA-256 of its secret, and its scopes."""

    name: str
    digest: bytes
    scopes: frozenset[str]


class Auth:
    """The declared tokens and the tags that need a scope; :meth:`authenticate` checks a header."""

    def __init__(self, tokens: Iterable[Token], restricted_tags: Iterable[str] = DEFAULT_RESTRICTED_TAGS,
                 source: str = ""):
        self.tokens = tuple(tokens)
        self.restricted_tags = frozenset(restricted_tags)
        self.source = source

    def __repr__(self) -> str:
        return f"Auth({len(self.tokens)} tokens from {self.source or 'code'})"

    def authenticate(self, authorization: str | None) -> Token | None:
        """The token an ``Authorization: Bearer <token>`` header value presents; None if none matches."""
        if not authorization:
            return None
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        digest = hashlib.sha256(presented.strip().encode("utf-8", "surrogatepass")).digest()
        found = None
        for token in self.tokens:  # no early exit: the time taken says nothing about which one matched
            if hmac.compare_digest(token.digest, digest):
                found = token
        return found

    def needed_scopes(self, tags: Iterable[str]) -> frozenset[str]:
        """The scopes a token needs for something carrying ``tags`` (beyond ``read``)."""
        return self.restricted_tags.intersection(tags)


def load_auth(tokens_file: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> Auth | None:
    """The server's tokens: from ``tokens_file``, else ``$FEATURE_STORE_TOKENS_FILE``, else the document
    in ``$FEATURE_STORE_TOKENS``; None when none is configured (then the server answers loopback only).

    Raises :class:`AuthConfigError` naming the file or variable and the entry at fault.
    """
    env = os.environ if environ is None else environ
    path = tokens_file or env.get(TOKENS_FILE_ENV)
    if path:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise AuthConfigError(f"cannot read the tokens file {source}: {exc.strerror or exc}") from None
    elif env.get(TOKENS_ENV):
        source, text = f"${TOKENS_ENV}", env[TOKENS_ENV]
    else:
        return None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The parser's message quotes the offending line, which may hold a secret: say where only.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise AuthConfigError(f"{source} is not valid YAML or JSON{where}") from None
    return _parse(doc, source, env)


def _parse(doc: Any, source: str, env: dict[str, str] | Any) -> Auth:
    example = "write `tokens: [{name: scoring, token_env: SCORING_TOKEN, scopes: [read]}]`"
    if isinstance(doc, list):
        doc = {"tokens": doc}
    if not isinstance(doc, dict):
        raise AuthConfigError(f"{source}: the top level must be a mapping with `tokens:`; {example}")
    unknown = sorted(set(doc) - {"tokens", "restricted_tags"})
    if unknown:
        raise AuthConfigError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}; "
                              "known: tokens, restricted_tags")
    restricted = doc.get("restricted_tags", list(DEFAULT_RESTRICTED_TAGS))
    if not isinstance(restricted, list) or not all(isinstance(t, str) and t for t in restricted):
        raise AuthConfigError(f"{source}: restricted_tags must be a list of tag names, e.g. [pii]")
    entries = doc.get("tokens")
    if not isinstance(entries, list) or not entries:
        raise AuthConfigError(f"{source}: `tokens` must be a non-empty list; {example}")
    tokens: list[Token] = []
    names: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{source}: tokens[{i}]"
        if not isinstance(entry, dict):
            raise AuthConfigError(f"{where} must be a mapping; {example}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise AuthConfigError(f"{where}: `name` is missing; name the client, e.g. name: scoring-service")
        where = f"{source}: token {name!r}"
        if name in names:
            raise AuthConfigError(f"{where} is declared twice; give each token its own name")
        names.add(name)
        unknown = sorted(set(entry) - {"name", "token", "token_env", "sha256", "scopes"})
        if unknown:
            raise AuthConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                                  "known: name, token, token_env, sha256, scopes")
        secrets = [k for k in ("token", "token_env", "sha256") if k in entry]
        if len(secrets) != 1:
            raise AuthConfigError(f"{where}: give exactly one of token, token_env or sha256 (got "
                                  f"{', '.join(secrets) or 'none'})")
        digest = _digest(entry, secrets[0], where, env)
        scopes = entry.get("scopes")
        if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) and s for s in scopes):
            raise AuthConfigError(f"{where}: `scopes` must be a non-empty list, e.g. scopes: [read] or [push]")
        tokens.append(Token(name, digest, frozenset(scopes)))
    if len({t.digest for t in tokens}) != len(tokens):
        raise AuthConfigError(f"{source}: two tokens have the same secret; give each client its own")
    return Auth(tokens, restricted, source)


def _digest(entry: dict, kind: str, where: str, env: dict[str, str] | Any) -> bytes:
    value = entry[kind]
    if kind == "sha256":
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise AuthConfigError(f"{where}: sha256 must be 64 hex digits (`printf %s \"$TOKEN\" | sha256sum`)")
        return bytes.fromhex(value)
    if kind == "token_env":
        if not isinstance(value, str) or not value:
            raise AuthConfigError(f"{where}: token_env must name an environment variable")
        secret = env.get(value)
        if not secret:
            raise AuthConfigError(f"{where}: the environment variable {value} is not set (or empty)")
    else:
        if not isinstance(value, str):
            raise AuthConfigError(f"{where}: token must be text (quote it)")
        secret = value
    if len(secret) < MIN_TOKEN_LENGTH:
        raise AuthConfigError(f"{where}: the token is shorter than {MIN_TOKEN_LENGTH} characters; use a random one, "
                              "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
