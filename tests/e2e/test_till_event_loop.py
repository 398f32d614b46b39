"""The till's operations run on the event loop, one at a time per server process (see
the module docstring of kopilka.api.routers.purchases); the rest stays in the thread pool."""

from __future__ import annotations

import inspect

from fastapi.routing import APIRoute

from kopilka.api.routers import purchases

TILL_OPERATIONS = {
    "calculatePurchase",
    "confirmPurchase",
    "confirmHeldPurchase",
    "voidPurchase",
    "refundPurchase",
    "cancelPurchase",
}


def test_the_tills_operations_are_coroutines_and_reads_are_not() -> None:
    routes = {
        route.operation_id: route
        for route in purchases.router.routes
        if isinstance(route, APIRoute)
    }
    assert routes.keys() >= TILL_OPERATIONS
    for operation in TILL_OPERATIONS:
        assert inspect.iscoroutinefunction(routes[operation].endpoint), operation
    # Reads keep the thread pool, as does the back office: a slow one must not hold the loop.
    for other in routes.keys() - TILL_OPERATIONS:
        assert not inspect.iscoroutinefunction(routes[other].endpoint), other
