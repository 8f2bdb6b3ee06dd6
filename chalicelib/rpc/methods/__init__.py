"""The JSON-RPC methods, one module per method group; importing this registers them all.

Each method is named after the original client library's call
(``energyMarketAPI.registerProvider`` -> ``energy.registerProvider``); methods
the original library did not have follow the same camelCase style.

A group's module holds both its params and result models and its handlers:
a method's models and its handler are read and changed together, and the
models of one group are short enough to sit next to the code that fills them.
What several groups share is written once: ``fields`` (base models, amount,
id and page field types, ``Auth``) and ``common`` (the registry, the signed-call
helper, ``AUTH_ERRORS``, the OpenRPC document). A group that returns another
group's result model imports it from that group (portfolio shows trading's
purchases and meters' credits).

The groups are imported here in the order they register: ``registry`` is
complete after one import of this package, which is what
``chalicelib.wiring.dispatcher()`` and ``GET /openrpc.json`` rely on. The
order of methods in the OpenRPC document does not depend on it (the registry
lists methods by name).
"""

from __future__ import annotations

# Registration order, not alphabetical: the order the single methods module
# registered them in before the split (the registry lists them by name anyway).
# isort: off
from chalicelib.rpc.methods import (  # noqa: F401  (imported to register their methods)
    market,
    accounts,
    providers,
    meters,
    trading,
    settlement,
    portfolio,
    disputes,
    analytics,
)

# isort: on
from chalicelib.rpc.methods.common import API_VERSION, openrpc, registry

__all__ = ["API_VERSION", "openrpc", "registry"]
