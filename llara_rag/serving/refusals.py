"""Every refusal of the service in OpenAI's error shape, ``{"error": {"message", "type", "code"}}``.

The routes' own refusals, the framework's (an unknown path, a wrong method, a body that is not JSON or
over the size limit) and any failure of the service itself all answer in this one shape, with a message
that names the fix, so a client needs one error path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llara_rag.errors import InvalidInputError, LexicalIndexError, LLaRAError
from llara_rag.serving.schemas import ErrorResponse

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    503: "service_unavailable",
}

DOCUMENTED: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": HTTPStatus(status).phrase}
    for status in (*ERROR_TYPES, 500)
}
"""The error answers every route declares in the OpenAPI document (FastAPI's own 422 body among them)."""


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    kind = ERROR_TYPES.get(status, "server_error")
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": status}}, status_code=status, headers=headers
    )


def add_error_handlers(app: FastAPI) -> None:
    """OpenAI-shaped answers for every exception a request can end in."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, _framework_message(request, error), error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, first_problem(error.errors()))

    @app.exception_handler(LLaRAError)
    async def refused(_: Request, error: LLaRAError) -> JSONResponse:
        status = (
            422
            if isinstance(error, InvalidInputError)
            else 409
            if isinstance(error, LexicalIndexError)
            else 500
        )
        return error_response(status, str(error))

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        logger.error("%s %s failed: %s: %s", request.method, request.url.path, type(error).__name__, error)
        return error_response(
            500,
            f"the service failed on this request ({type(error).__name__}); its log has the details. "
            "Please report it with the request that caused it.",
        )


UNPARSED_BODY = "There was an error parsing the body"
"""FastAPI's detail for a body it could not decode (bytes that are not UTF-8, for one)."""


def _framework_message(request: Request, error: StarletteHTTPException) -> str:
    """The routes' own messages as they are; the framework's bare phrases ("Not Found") with the fix."""
    if error.detail == UNPARSED_BODY:
        return "the body could not be read: send UTF-8 JSON with the header Content-Type: application/json."
    if error.detail != HTTPStatus(error.status_code).phrase:
        return str(error.detail)
    path = request.url.path
    if error.status_code == 404:
        return f"no route {path}; the service's routes are listed at /docs (with the key when one is set)."
    if error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "another method")
        return f"{request.method} is not accepted on {path}; use {allowed}."
    return str(error.detail)


def first_problem(errors: Sequence[Any]) -> str:
    """``mode: must be 'lexical', 'dense' or 'hybrid'``: the first problem of a body, in one line."""
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"the body is not valid JSON ({first['ctx']['error']} at character {first['loc'][-1]})."
    where = ".".join(str(part) for part in first["loc"] if part != "body")
    rule = str(first["msg"]).replace("Input should be", "must be")
    if not where:
        return f"the body {rule}: send a JSON object with the header Content-Type: application/json."
    return f"{where}: {rule}"
