"""One error type for the serving path, carrying a gRPC status code.

Every failure a client can cause or observe (unknown model, bad input, full
queue, ...) is raised as :class:`ServingError` once, deep in the request path;
the gRPC front end turns it into ``context.abort(code, message)`` and the REST
front end into ``{"error": message}`` with the HTTP status TF Serving uses for
that code. Keeping one mapping here is what makes both APIs agree.
"""
from __future__ import annotations

import grpc

from llmos_tf.errors import LlmosError

# TF Serving's REST front end maps canonical codes to HTTP like this.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class ServingError(LlmosError):
    """A request failed with a canonical status ``code`` (``grpc.StatusCode``)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)

    @property
    def code_number(self) -> int:
        """The numeric ``tensorflow.error.Code`` (same numbers as gRPC) for StatusProto fields."""
        return int(self.code.value[0])


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def resource_exhausted(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)
