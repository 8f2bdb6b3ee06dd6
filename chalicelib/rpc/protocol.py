"""JSON-RPC 2.0: parsing, batches, notifications and the mapping of errors.

Everything a client can get wrong is answered here with the specification's
error object; nothing below this module ever decides a wire format. Numbers
are parsed as ``int`` and ``Decimal`` (never float) so amounts convert
exactly, and results are written with exact decimals.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any, Final

import simplejson
from pydantic import ValidationError

from chalicelib.domain.errors import DomainError
from chalicelib.rpc.methods.common import signed_call
from chalicelib.rpc.registry import CallContext, Registry
from chalicelib.services.auth import answer_once
from chalicelib.services.dependencies import Dependencies

logger = logging.getLogger(__name__)

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

MAX_BODY_BYTES: Final = 1_048_576
MAX_BATCH: Final = 50

Json = Any


class _ParseFailure(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _ParseFailure(f"{name} is not valid JSON")


def parse_body(body: bytes) -> Json:
    if len(body) > MAX_BODY_BYTES:
        raise _ParseFailure("request body too large")
    try:
        text = body.decode("utf-8")
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _ParseFailure("request body is not valid JSON") from exc


def encode(response: Json) -> bytes:
    return simplejson.dumps(response, use_decimal=True, separators=(",", ":")).encode()


def error_object(code: int, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return error


def _response(
    request_id: Json, *, result: Json = None, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    if error is not None:
        return {"jsonrpc": "2.0", "error": error, "id": request_id}
    return {"jsonrpc": "2.0", "result": result, "id": request_id}


def _valid_id(value: Json) -> bool:
    # The spec allows strings, numbers and null; fractional ids "SHOULD NOT".
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


class Dispatcher:
    def __init__(self, registry: Registry, deps: Dependencies) -> None:
        self._registry = registry
        self._deps = deps

    def handle(self, body: bytes) -> bytes | None:
        """Answer one HTTP body; None when there is nothing to send (notifications)."""
        try:
            payload = parse_body(body)
        except _ParseFailure as exc:
            return _body_error(
                PARSE_ERROR, "Parse error", {"reason": "parse_error", "detail": str(exc)}
            )
        if isinstance(payload, list):
            if not payload:
                return _body_error(INVALID_REQUEST, "Invalid Request", {"reason": "empty_batch"})
            if len(payload) > MAX_BATCH:
                return _body_error(
                    INVALID_REQUEST,
                    "Invalid Request",
                    {"reason": "batch_too_large", "max_batch": MAX_BATCH},
                )
            answers = [a for a in (self.handle_call(call) for call in payload) if a is not None]
            return encode(answers) if answers else None
        answer = self.handle_call(payload)
        return encode(answer) if answer is not None else None

    def handle_call(self, call: Json) -> dict[str, Any] | None:
        """Answer one request object; None for a valid notification."""
        if not isinstance(call, dict):
            return _response(
                None,
                error=error_object(INVALID_REQUEST, "Invalid Request", {"reason": "not_an_object"}),
            )
        request_id = call.get("id")
        is_notification = "id" not in call
        problem = _envelope_problem(call)
        if problem is not None:
            return _response(
                request_id if _valid_id(request_id) else None,
                error=error_object(INVALID_REQUEST, "Invalid Request", {"reason": problem}),
            )
        try:
            result = self._invoke(call["method"], call.get("params", {}))
            response = _response(request_id, result=result)
        except _RpcError as exc:
            response = _response(request_id, error=exc.error)
        except DomainError as exc:
            response = _response(request_id, error=_domain_error(exc))
        except Exception:
            logger.exception("internal error in %s", call.get("method"))
            response = _response(
                request_id,
                error=error_object(INTERNAL_ERROR, "Internal error", {"reason": "internal_error"}),
            )
        return None if is_notification else response

    def _invoke(self, method: str, params: Json) -> Json:
        spec = self._registry.get(method)
        if spec is None:
            raise _RpcError(
                error_object(
                    METHOD_NOT_FOUND,
                    "Method not found",
                    {"reason": "method_not_found", "method": method},
                )
            )
        if isinstance(params, list):
            params = _by_position(spec.params, params)
        try:
            parsed = spec.params.model_validate(params)
        except ValidationError as exc:
            raise _invalid_params([_field_error(e) for e in exc.errors(include_url=False)]) from exc
        context = CallContext(deps=self._deps, method=method, raw_params=params)
        if not spec.signed:
            return spec.handler(context, parsed).model_dump(mode="python")
        # A signed call is answered once: a retry with its nonce and params gets
        # the first answer, kept as JSON text with the nonce (services.auth).
        answer = answer_once(
            self._deps,
            signed_call(context, parsed),
            lambda: encode(spec.handler(context, parsed).model_dump(mode="python")).decode(),
        )
        return json.loads(answer, parse_float=Decimal)


class _RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


def _invalid_params(errors: list[dict[str, str]]) -> _RpcError:
    return _RpcError(
        error_object(
            INVALID_PARAMS, "Invalid params", {"reason": "invalid_params", "errors": errors}
        )
    )


def _body_error(code: int, message: str, data: dict[str, Any]) -> bytes:
    """A whole body's answer when no single call can be answered (id null)."""
    return encode(_response(None, error=error_object(code, message, data)))


def _envelope_problem(call: dict[str, Any]) -> str | None:
    if call.get("jsonrpc") != "2.0":
        return "jsonrpc_must_be_2.0"
    if not isinstance(call.get("method"), str):
        return "method_must_be_a_string"
    if "id" in call and not _valid_id(call["id"]):
        return "id_must_be_string_integer_or_null"
    if "params" in call and not isinstance(call["params"], dict | list):
        return "params_must_be_object_or_array"
    return None


def wire_names(model: type[Any]) -> list[str]:
    """A params model's members as clients name them (a field's alias where it has one)."""
    return [
        field.validation_alias if isinstance(field.validation_alias, str) else name
        for name, field in model.model_fields.items()
    ]


def _by_position(model: type[Any], values: list[Any]) -> dict[str, Any]:
    names = wire_names(model)
    if len(values) > len(names):
        raise _invalid_params([{"field": "", "message": f"at most {len(names)} positional params"}])
    return dict(zip(names, values, strict=False))


def _field_error(error: Any) -> dict[str, str]:
    location = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid"))
    # Messages from our amount parsers arrive as "Value error, <why>".
    return {"field": location, "message": message.removeprefix("Value error, ")}


def _domain_error(exc: DomainError) -> dict[str, Any]:
    data = {"reason": exc.reason, **exc.data}
    return error_object(exc.code, exc.message, _jsonable(data))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str | Decimal):
        return value
    return str(value)
