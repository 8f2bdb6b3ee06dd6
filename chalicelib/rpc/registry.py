"""The method registry: each JSON-RPC method, its models and its handler.

One declaration per method feeds the dispatcher (which validates with the
params model), the OpenRPC document (built from the same models) and the
docs. Nothing about a method is written twice.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from chalicelib.domain.errors import DomainError
from chalicelib.services.dependencies import Dependencies

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class CallContext:
    """What a handler gets besides its parameters."""

    deps: Dependencies
    method: str
    raw_params: dict[str, Any]  # as received, for signature checks


@dataclass(frozen=True)
class MethodSpec(Generic[P, R]):
    name: str
    summary: str
    params: type[P]
    result: type[R]
    handler: Callable[[CallContext, P], R]
    signed: bool
    errors: tuple[type[DomainError], ...] = ()
    original_name: str | None = None  # the original client library's call, if any
    description: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)


class Registry:
    def __init__(self) -> None:
        self._methods: dict[str, MethodSpec[Any, Any]] = {}

    def method(
        self,
        name: str,
        *,
        summary: str,
        result: type[R],
        signed: bool = False,
        errors: tuple[type[DomainError], ...] = (),
        original_name: str | None = None,
    ) -> Callable[[Callable[[CallContext, P], R]], Callable[[CallContext, P], R]]:
        """Register ``handler(context, params) -> result``; the params model is the
        handler's annotated second argument."""

        def register(handler: Callable[[CallContext, P], R]) -> Callable[[CallContext, P], R]:
            params_model = _params_model(handler)
            if name in self._methods:
                raise ValueError(f"method {name} registered twice")
            self._methods[name] = MethodSpec(
                name=name,
                summary=summary,
                params=params_model,
                result=result,
                handler=handler,
                signed=signed,
                errors=errors,
                original_name=original_name,
                description=inspect.cleandoc(handler.__doc__ or ""),
            )
            return handler

        return register

    def get(self, name: str) -> MethodSpec[Any, Any] | None:
        return self._methods.get(name)

    def __iter__(self) -> Iterator[MethodSpec[Any, Any]]:
        return iter(sorted(self._methods.values(), key=lambda m: m.name))


def _params_model(handler: Callable[..., Any]) -> type[Any]:
    hints = typing.get_type_hints(handler)
    parameters = list(inspect.signature(handler).parameters)
    model = hints[parameters[1]]
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{handler.__name__}: second parameter must be a pydantic model")
    return model
