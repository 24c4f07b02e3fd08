"""Optional bearer-token check for both front ends, and the request-size limits.

TF Serving has no authentication; ``--auth_token_file`` adds the simplest
scheme clients already know: gRPC metadata ``authorization: Bearer <token>``
and the REST header ``Authorization: Bearer <token>``. Tokens are compared in
constant time. The file holds one token (surrounding whitespace is ignored).
"""
from __future__ import annotations

import hmac
import pathlib
from typing import Callable

import grpc

from llmos_tf.errors import ConfigError


def read_token(path: str | pathlib.Path | None) -> str | None:
    if not path:
        return None
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"--auth_token_file: {path} does not exist")
    token = path.read_text(encoding="utf-8").strip()
    if not token or any(c.isspace() for c in token):
        raise ConfigError(f"--auth_token_file: {path} must hold one token without spaces")
    return token


def check_bearer(header: str | None, token: str | None) -> bool:
    """True when no token is configured or ``header`` is ``Bearer <token>``."""
    if token is None:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Rejects RPCs without ``authorization: Bearer <token>`` metadata (UNAUTHENTICATED)."""

    def __init__(self, token: str) -> None:
        self._token = token

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation: Callable, handler_call_details):
        metadata = dict(handler_call_details.invocation_metadata or ())
        if check_bearer(metadata.get("authorization"), self._token):
            return continuation(handler_call_details)
        return self._deny
