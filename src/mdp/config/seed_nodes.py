"""Seed-style components: a channel function or a plain provider class, registered like any component.

The original registry took ``register_operator("operator.custom", my_operator)`` with a coroutine function
``async fn(inputs, outputs, **params)`` and ``register_provider("provider.custom", MyProvider)`` with a
plain class. Here each is wrapped in a small :class:`SeedNode` component class, so the registry, ``mdp
components`` and the params check treat it like a built-in (its ``Params`` model comes from the function's
or the class's signature: a misspelt key is an error), and the builder puts a *function node* into the
graph (:meth:`SeedNode.node_fn`), which the runtime calls with the dicts of channels as the seed did.

A provider class is built with the node's params as keyword arguments; its instance is an async iterable
(``__aiter__``) or has ``stream()`` returning one. Each item it yields is put on every output channel;
then the outputs close and ``close()`` / ``aclose()`` is awaited if the instance has one.

Function nodes run in ``dag`` mode; a classic pipeline is made of operator classes.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, create_model

from mdp.errors import ConfigError
from mdp.runtime.graph import NodeFn
from mdp.runtime.operator import Operator


class SeedNode(Operator):
    """A seed-style component: built from validated params, run as a function node (see the module)."""

    #: the function or provider class this component wraps
    target: ClassVar[Any]

    def __init__(self, **params: Any) -> None:
        self.params = params

    @classmethod
    def from_params(cls, params: BaseModel) -> SeedNode:
        values = params.model_dump()
        values.update(params.model_extra or {})
        return cls(**values)

    def node_fn(self) -> NodeFn:
        """The ``async fn(inputs, outputs)`` the graph node runs."""
        raise NotImplementedError


class ChannelFunctionNode(SeedNode):
    """``async fn(inputs, outputs, **params)``, called with the node's params bound."""

    def node_fn(self) -> NodeFn:
        fn, params = self.target, dict(self.params)

        async def run(inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
            await fn(inputs, outputs, **params)

        run.__qualname__ = getattr(fn, "__qualname__", "seed_function")
        return run


class ProviderNode(SeedNode):
    """A provider class whose instance yields the items the node sends (see the module)."""

    is_source: ClassVar[bool] = True

    def node_fn(self) -> NodeFn:
        cls, params = self.target, dict(self.params)

        async def run(inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
            provider = cls(**params)
            stream = provider if hasattr(provider, "__aiter__") else provider.stream()
            try:
                async for item in stream:
                    for ch in outputs.values():
                        await ch.put(item)
            finally:
                for ch in outputs.values():
                    ch.close()
                for name in ("aclose", "close"):
                    closer = getattr(provider, name, None)
                    if callable(closer):
                        result = closer()
                        if inspect.isawaitable(result):
                            await result
                        break

        run.__qualname__ = f"{cls.__qualname__}.stream"
        return run


def is_seed_target(obj: object) -> bool:
    """True for what :func:`adapt` wraps: a coroutine function, or a class that is not an mdp Operator."""
    if isinstance(obj, type):
        return not issubclass(obj, Operator)
    return inspect.iscoroutinefunction(obj)


def adapt(obj: Any) -> type[SeedNode]:
    """The component class wrapping a seed-style function or provider class.

    Raises:
        TypeError: ``obj`` is neither, with what each must look like.
    """
    if isinstance(obj, type) and not issubclass(obj, Operator):
        if not (hasattr(obj, "__aiter__") or callable(getattr(obj, "stream", None))):
            raise TypeError(
                f"{obj.__qualname__} is not an mdp Operator, Source or Sink class, and as a seed-style provider "
                "class it has neither __aiter__ nor stream(): a provider's instance must be an async iterable (or "
                "have stream() returning one) of the items it sends"
            )
        base: type[SeedNode] = ProviderNode
        params = _params_model(obj.__qualname__, inspect.signature(obj), skip=0, of=obj.__init__)
    elif inspect.iscoroutinefunction(obj):
        sig = inspect.signature(obj)
        positional = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(positional) < 2:
            raise TypeError(
                f"{obj.__qualname__}{sig} cannot be a node: a seed-style function takes (inputs, outputs), "
                "the dicts of channels, then its params as keyword arguments"
            )
        base = ChannelFunctionNode
        params = _params_model(obj.__qualname__, sig, skip=2, of=obj)
    else:
        raise TypeError(
            f"{obj!r} is not an mdp Operator, Source or Sink class, a seed-style 'async def fn(inputs, outputs)' "
            "or a provider class"
        )
    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    target = obj if isinstance(obj, type) else staticmethod(obj)  # a function attribute would bind to self
    attrs: dict[str, Any] = {
        "target": target,
        "Params": params,
        "__doc__": doc[0] if doc else "",
        "__module__": __name__,
    }
    return type(f"Seed_{getattr(obj, '__name__', 'node')}", (base,), attrs)


def _params_model(name: str, sig: inspect.Signature, *, skip: int, of: Any) -> type[BaseModel]:
    """A params model from a signature: one field per keyword parameter (required if it has no default),
    typed by its annotation (resolved from ``of``'s module; unresolvable ones take any value); ``**kwargs``
    lets other keys through, else an unknown key is an error naming it."""
    try:
        hints = typing.get_type_hints(of)
    except Exception:  # an annotation naming what its module cannot resolve: leave the params untyped
        hints = {}
    fields: dict[str, Any] = {}
    extra: Literal["allow", "forbid"] = "forbid"
    for i, p in enumerate(sig.parameters.values()):
        if i < skip or p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            extra = "allow"
            continue
        annotation = hints.get(
            p.name, Any if p.annotation is p.empty or isinstance(p.annotation, str) else p.annotation
        )
        fields[p.name] = (annotation, ... if p.default is p.empty else p.default)
    try:
        model: type[BaseModel] = create_model(  # type: ignore[call-overload]
            f"{name}Params", __config__=ConfigDict(extra=extra, arbitrary_types_allowed=True), **fields
        )
    except Exception as exc:  # an annotation pydantic cannot validate
        raise ConfigError(f"{name}: its parameters cannot become a params model: {exc}") from exc
    return model


Target = str | type[Operator] | Callable[..., Any]

__all__ = ["ChannelFunctionNode", "ProviderNode", "SeedNode", "Target", "adapt", "is_seed_target"]
