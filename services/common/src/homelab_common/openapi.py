"""Typed HTTP operations and the OpenAPI 3.1 document generated from them.

Each operation declares its query, body and response types (pydantic models or any type pydantic can adapt);
the same declarations validate requests at the edge (a 400 naming the bad field), serialise responses, and
produce ``/openapi.json``. One source of truth, so the document cannot drift from the code and schemathesis can
fuzz every service from it.

    api = Api("pxe", "1.0.0")

    @api.get("/machines/<mac>", summary="One machine", responses={200: Machine})
    def machine(mac: str) -> Machine: ...

    api.install(app)
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, wraps
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from pydantic import BaseModel, TypeAdapter, ValidationError

from homelab_common.web import ApiError, InvalidInput

REF_TEMPLATE = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"<(?:(?P<converter>[a-z]+):)?(?P<name>\w+)>")
_CONVERTER_SCHEMA: dict[str, dict[str, Any]] = {
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number", "minimum": 0},
}


_PHRASES = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No content",
    400: "Invalid input",
    403: "Refused",
    404: "Not found",
    409: "Conflict",
    503: "Unavailable",
}


class Problem(BaseModel):
    """The body of every error response."""

    error: str
    message: str
    fields: list[dict[str, str]] | None = None


@dataclass(frozen=True)
class Text:
    """A non-JSON response body (an iPXE script, cloud-config YAML, Prometheus text)."""

    media_type: str = "text/plain"
    description: str = ""


@dataclass
class Operation:
    rule: str
    method: str
    view: Callable[..., Any]
    summary: str
    description: str
    query: type[BaseModel] | None
    body: Any
    responses: dict[int, Any]
    params: dict[str, Any]
    tags: list[str]

    @property
    def operation_id(self) -> str:
        return self.view.__name__

    def path_params(self) -> list[tuple[str, str | None]]:
        return [(m["name"], m["converter"]) for m in _PATH_PARAM.finditer(self.rule)]


def field_errors(exc: ValidationError, where: str) -> list[dict[str, str]]:
    """pydantic errors as ``[{"field": "body.machines.0.mac", "message": ...}]``."""
    return [{"field": ".".join([where, *(str(p) for p in err["loc"])]), "message": err["msg"]} for err in exc.errors()]


def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


@dataclass
class Api:
    """A service's typed operations; ``install`` registers them and ``/openapi.json`` on an app."""

    title: str
    version: str
    description: str = ""
    operations: list[Operation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.blueprint = Blueprint(f"{self.title}-api", __name__)

    def route(
        self,
        rule: str,
        method: str,
        *,
        summary: str,
        description: str = "",
        query: type[BaseModel] | None = None,
        body: Any = None,
        responses: Mapping[int, Any],
        params: Mapping[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register an operation. The view gets path params, plus ``query=``/``body=`` when declared."""

        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            op = Operation(
                rule, method.upper(), view, summary, description, query, body, dict(responses),
                dict(params or {}), tags or [],
            )  # fmt: skip
            self.operations.append(op)
            self.blueprint.add_url_rule(rule, view.__name__, self._wrap(op), methods=[op.method])
            return view

        return decorate

    def get(self, rule: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route(rule, "GET", **kwargs)

    def post(self, rule: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route(rule, "POST", **kwargs)

    def put(self, rule: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route(rule, "PUT", **kwargs)

    def delete(self, rule: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self.route(rule, "DELETE", **kwargs)

    def install(self, app: Flask) -> None:
        app.register_blueprint(self.blueprint)
        app.add_url_rule("/openapi.json", f"{self.title}-openapi", lambda: jsonify(self.document))

    def _wrap(self, op: Operation) -> Callable[..., Any]:
        success = min((s for s in op.responses if s < 300), default=200)
        success_type = op.responses.get(success)
        dumper = _adapter(success_type) if success_type is not None and not isinstance(success_type, Text) else None
        param_adapters = {name: _adapter(tp) for name, tp in op.params.items()}
        body_adapter = _adapter(op.body) if op.body is not None else None

        @wraps(op.view)
        def view(**path: Any) -> Any:
            for name, adapter in param_adapters.items():
                try:
                    path[name] = adapter.validate_python(path[name])
                except ValidationError as exc:
                    raise InvalidInput(f"invalid path parameter {name}", fields=field_errors(exc, name)) from None
            kwargs: dict[str, Any] = {}
            if op.query is not None:
                kwargs["query"] = _parse_query(op.query)
            if body_adapter is not None:
                try:
                    kwargs["body"] = body_adapter.validate_json(_normalised_json(request.get_data()), strict=True)
                except ValidationError as exc:
                    raise InvalidInput("invalid request body", fields=field_errors(exc, "body")) from None
                except ValueError:  # json.loads: not JSON at all (ValidationError is a ValueError too)
                    raise InvalidInput(
                        "the request body must be JSON", fields=[{"field": "body", "message": "not JSON"}]
                    ) from None
            result = op.view(**path, **kwargs)
            if isinstance(result, Response):
                return result
            status = success
            if isinstance(result, tuple):
                result, status = result
            if isinstance(success_type, Text):
                return Response(result, status=status, mimetype=success_type.media_type)
            if dumper is None:
                return Response(status=status)
            return Response(dumper.dump_json(result, by_alias=True), status=status, mimetype="application/json")

        return view

    @cached_property
    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document, built once from every operation's declared types."""
        inputs: list[tuple[Any, Any, TypeAdapter[Any]]] = []
        for index, op in enumerate(self.operations):
            if op.query is not None:
                inputs.append(((index, "query"), "validation", _adapter(op.query)))
            if op.body is not None:
                inputs.append(((index, "body"), "validation", _adapter(op.body)))
            for name, tp in op.params.items():
                inputs.append(((index, f"param:{name}"), "validation", _adapter(tp)))
            for status, tp in self._responses(op).items():
                if tp is not None and not isinstance(tp, Text):
                    inputs.append(((index, status), "serialization", _adapter(tp)))
        schemas, defs = TypeAdapter.json_schemas(inputs, ref_template=REF_TEMPLATE) if inputs else ({}, {})
        paths: dict[str, dict[str, Any]] = {}
        for index, op in enumerate(self.operations):
            entry: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "responses": {}}
            if op.description:
                entry["description"] = op.description
            if op.tags:
                entry["tags"] = op.tags
            parameters = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": schemas.get(((index, f"param:{name}"), "validation"))
                    or dict(_CONVERTER_SCHEMA.get(converter or "", {"type": "string"})),
                }
                for name, converter in op.path_params()
            ]
            if op.query is not None:
                parameters += _query_parameters(schemas[((index, "query"), "validation")], defs)
            if parameters:
                entry["parameters"] = parameters
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": schemas[((index, "body"), "validation")]}},
                }
            for status, tp in self._responses(op).items():
                response: dict[str, Any] = {"description": _describe(status, tp)}
                if isinstance(tp, Text):
                    response["content"] = {tp.media_type: {"schema": {"type": "string"}}}
                elif tp is not None:
                    response["content"] = {"application/json": {"schema": schemas[((index, status), "serialization")]}}
                entry["responses"][str(status)] = response
            openapi_path = _PATH_PARAM.sub(lambda m: "{" + m["name"] + "}", op.rule)
            paths.setdefault(openapi_path, {})[op.method.lower()] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version, "description": self.description},
            "paths": paths,
            "components": {"schemas": defs.get("$defs", {})},
        }

    @staticmethod
    def _responses(op: Operation) -> dict[int, Any]:
        """Declared responses (an ApiError class stands for a Problem body) plus the edge validation's own."""
        responses = {
            status: Problem if isinstance(tp, type) and issubclass(tp, ApiError) else tp
            for status, tp in op.responses.items()
        }
        if op.query is not None or op.body is not None or op.params:
            responses.setdefault(400, Problem)
        if op.path_params():
            responses.setdefault(404, Problem)
        return responses


def _describe(status: int, tp: Any) -> str:
    if isinstance(tp, Text) and tp.description:
        return tp.description
    doc = getattr(tp, "__doc__", None) if isinstance(tp, type) else None
    phrase = _PHRASES.get(status, "Response")
    return f"{phrase}: {doc.strip().splitlines()[0]}" if doc and status >= 400 else phrase


def _query_parameters(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    if "$ref" in schema:
        schema = defs["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _integral(text: str) -> float | int:
    number = float(text)
    return int(number) if number.is_integer() else number


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _normalised_json(raw: bytes) -> str:
    """Parse and re-emit a JSON body so strict validation sees ``1.0`` as the integer JSON Schema says it is.

    Strict mode is what rejects ``false`` or ``"1"`` where a number is declared; it would also reject ``1.0`` for an
    integer, which JSON Schema (and so every client generated from our document) considers valid.
    """
    return json.dumps(json.loads(raw, parse_float=_integral, parse_constant=_reject_constant))


def _parse_query(model: type[BaseModel]) -> BaseModel:
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in request.args:
            continue
        origin = typing.get_origin(info.annotation)
        data[key] = request.args.getlist(key) if origin in (list, tuple, set) else request.args[key]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("invalid query parameters", fields=field_errors(exc, "query")) from None
