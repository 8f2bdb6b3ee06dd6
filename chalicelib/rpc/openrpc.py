"""The OpenRPC document, generated from the models that validate requests.

``docs/openrpc.json`` is a stored copy for integrators and reviewers: a test
fails when the generated document no longer matches it. After a deliberate
API change, rewrite it with ``python -m chalicelib.rpc.openrpc --write``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from chalicelib.rpc.registry import MethodSpec, Registry

OPENRPC_VERSION = "1.3.2"
_REF = "#/components/schemas/{model}"
STORED_COPY = Path(__file__).resolve().parents[2] / "docs" / "openrpc.json"
REGENERATE = "python -m chalicelib.rpc.openrpc --write"


def openrpc_document(registry: Registry, api_version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    methods = [_method(spec, schemas) for spec in registry]
    errors: dict[str, Any] = {}
    for spec in registry:
        for error in spec.errors:
            errors[error.__name__] = {
                "code": error.code,
                "message": (error.__doc__ or error.__name__).strip(),
                "data": {"reason": error.reason},
            }
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "Energy Marketplace",
            "version": api_version,
            "description": "Peer-to-peer renewable energy market. Signed methods carry an "
            "`auth` member; see docs/api.md for the signing scheme.",
        },
        "servers": [{"name": "this deployment", "url": "/rpc"}],
        "methods": methods,
        "components": {"schemas": schemas, "errors": errors},
    }


def _method(spec: MethodSpec[Any, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    params_schema = _schema(spec.params, schemas)
    required = set(params_schema.get("required", []))
    params = [
        {"name": name, "required": name in required, "schema": schema}
        for name, schema in params_schema.get("properties", {}).items()
    ]
    method: dict[str, Any] = {
        "name": spec.name,
        "summary": spec.summary,
        "paramStructure": "by-name" if spec.signed else "either",
        "params": params,
        "result": {"name": spec.result.__name__, "schema": _ref(spec.result, schemas)},
        "errors": [{"$ref": f"#/components/errors/{e.__name__}"} for e in spec.errors],
        "x-signed": spec.signed,
    }
    if spec.description:
        method["description"] = spec.description
    if spec.original_name:
        method["x-original-name"] = spec.original_name
    return method


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=_REF)
    schemas.update(schema.pop("$defs", {}))
    return schema


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schemas[model.__name__] = _schema(model, schemas)
    return {"$ref": _REF.format(model=model.__name__)}


def canonical_json(document: dict[str, Any]) -> str:
    """The stored copy's text: sorted keys, indent 2, UTF-8, a final newline."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    from chalicelib.rpc.methods import openrpc

    parser = argparse.ArgumentParser(
        prog="python -m chalicelib.rpc.openrpc",
        description=f"Print this API's OpenRPC document, or write it to {STORED_COPY.name}.",
    )
    parser.add_argument(
        "--write", action="store_true", help=f"rewrite {STORED_COPY} (a deliberate API change)"
    )
    text = canonical_json(openrpc())
    if parser.parse_args(argv).write:
        STORED_COPY.write_text(text, encoding="utf-8")
        print(f"wrote {STORED_COPY}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
