"""Every shipped webhook's matchConditions, evaluated with a real CEL implementation.

Against every request kube-apiserver v1.32 really sent (../shared/fixtures/apiserver-v1.32)
and against UPDATEs derived from them: no expression ever errors (an error fails closed with
failurePolicy Fail: it once blocked every label, annotation and finalizer change in tool
namespaces); pod spec changes and every ephemeral-container update are sent; metadata-only
changes and spec changes that leave the pod template alone (scaling) are not. The real API
server has the last word (tests/test_kube_apiserver.py); this is the fast check of every case.
"""

from __future__ import annotations

import copy
from typing import Any

import cel
import pytest

from imagegate.core.workloads import CONTAINER_LISTS, POD_TEMPLATE_PATHS
from tests.cel_conditions import (
    ConditionError,
    MatchCondition,
    Webhook,
    captured_requests,
    evaluate,
    metadata_only_updates,
    rules_match,
    sent,
    sent_by_configuration,
    shipped_documents,
    spec_updates,
    template_preserving_updates,
    webhooks,
)

SHIPPED = webhooks(shipped_documents())
CAPTURED = captured_requests()
CAPTURED_IDS = [name for name, _ in CAPTURED]

# The expression deploy/base/webhooks.yaml shipped before: it reads request.subResource
# without has(), which the API server omits on a plain UPDATE.
BROKEN = (
    "request.operation != 'UPDATE' || request.subResource == 'ephemeralcontainers' "
    "|| !has(object.spec) || !has(oldObject.spec) || object.spec != oldObject.spec"
)


def value(expression: str, **variables: Any) -> Any:
    return cel.evaluate(expression, variables)


def errors(expression: str, **variables: Any) -> bool:
    try:
        cel.evaluate(expression, variables)
    except Exception:
        return True
    return False


def test_the_library_has_the_semantics_the_helper_relies_on() -> None:
    request = {"operation": "UPDATE"}
    assert errors("request.subResource == 'x'", request=request)  # missing key: an error, as in cel-go
    assert value("has(request.subResource)", request=request) is False
    assert errors("false || request.subResource == 'x'", request=request)
    assert value("request.subResource == 'x' || true", request=request) is True  # commutative over errors
    assert value("true || request.subResource == 'x'", request=request) is True
    assert errors("request.subResource == 'x' && true", request=request)
    assert value("request.subResource == 'x' && false", request=request) is False
    nested = {"a": [1, {"b": "c"}]}
    assert value("x == y", x=nested, y=copy.deepcopy(nested)) is True
    assert value("x != y", x=nested, y={"a": [1, {"b": "d"}]}) is True
    assert value("x == y", x={"a": 1}, y={"a": "1"}) is False  # heterogeneous: false, as in cel-go
    assert value("x == y", x={"a": 1}, y={"a": 1, "b": None}) is False
    # Stricter than cel-go (which answers false): a presence test on null is an error here.
    assert errors("has(x.spec)", x=None)


def test_shipped_configurations_are_found() -> None:
    kinds = {hook.configuration.split("/")[0] for hook in SHIPPED}
    assert kinds == {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    # CREATE webhooks have no conditions (they would cost more than they save); UPDATE ones filter.
    for hook in SHIPPED:
        operations = {op for rule in hook.rules for op in rule["operations"]}
        assert operations in ({"CREATE"}, {"UPDATE"}), hook
        assert bool(hook.conditions) == (operations == {"UPDATE"}), hook
    assert len(CAPTURED) == 84  # 42 calls, each to the mutating and to the validating webhook


def test_the_old_expression_is_caught() -> None:
    """The check fails on the expression that blocked metadata changes: it can fail."""
    broken = Webhook(
        "old deploy/base", "x/y", "old", (), (MatchCondition("spec-changed", BROKEN, cel.compile(BROKEN)),)
    )
    base = dict(CAPTURED)["mutating/pod-create"]
    _, labelled = next(metadata_only_updates(base))
    with pytest.raises(ConditionError, match="subResource"):
        sent(broken, labelled)


def check(request: dict[str, Any]) -> dict[str, bool]:
    """Per shipped configuration: whether its endpoint is called for ``request``."""
    try:
        return sent_by_configuration(SHIPPED, request)
    except ConditionError as exc:
        raise AssertionError(str(exc)) from None


def selected(request: dict[str, Any]) -> set[str]:
    """The configurations one of whose webhooks' rules select ``request``."""
    return {f"{hook.source}: {hook.configuration}" for hook in SHIPPED if rules_match(hook, request)}


CONFIGURATIONS = {f"{hook.source}: {hook.configuration}" for hook in SHIPPED}


def makes_pods_differently(request: dict[str, Any]) -> bool:
    """What imagegate must see, by another route than the CEL: a CREATE, an ephemeral container,
    or an UPDATE that changes a Pod's containers or volumes or a workload's pod template."""
    if request["operation"] != "UPDATE" or request.get("subResource") == "ephemeralcontainers":
        return True
    new, old = request["object"], request["oldObject"]
    path = POD_TEMPLATE_PATHS[new["kind"]]
    if new["kind"] == "Pod":
        return any(new["spec"].get(key) != old["spec"].get(key) for key in (*CONTAINER_LISTS, "volumes"))
    for token in path[:-1]:
        new, old = new.get(token, {}), old.get(token, {})
    return bool(new != old)


@pytest.mark.parametrize("name", CAPTURED_IDS)
def test_every_captured_request_that_changes_pods_is_still_sent(name: str) -> None:
    request = dict(CAPTURED)[name]
    assert selected(request) == CONFIGURATIONS, f"the rules no longer select {name}"
    assert check(request) == dict.fromkeys(CONFIGURATIONS, makes_pods_differently(request)), name


def test_the_capture_has_updates_of_both_sorts() -> None:
    updates = [request for _name, request in CAPTURED if request["operation"] == "UPDATE"]
    assert {makes_pods_differently(request) for request in updates} == {True, False}


@pytest.mark.parametrize("name", CAPTURED_IDS)
def test_metadata_only_updates_are_not_sent(name: str) -> None:
    base = dict(CAPTURED)[name]
    for change, request in metadata_only_updates(base):
        assert selected(request) == CONFIGURATIONS
        assert check(request) == dict.fromkeys(CONFIGURATIONS, False), f"a {change} UPDATE derived from {name}"


@pytest.mark.parametrize("name", CAPTURED_IDS)
def test_updates_that_keep_the_pod_template_are_not_sent(name: str) -> None:
    """Scaling a ReplicaSet is the controller's UPDATE of spec.replicas: it must not wait for imagegate."""
    base = dict(CAPTURED)[name]
    if base.get("subResource") == "ephemeralcontainers":
        return
    for change, request in template_preserving_updates(base):
        assert check(request) == dict.fromkeys(CONFIGURATIONS, False), f"a {change} UPDATE derived from {name}"


@pytest.mark.parametrize("name", CAPTURED_IDS)
def test_spec_changes_are_sent(name: str) -> None:
    changes = list(spec_updates(dict(CAPTURED)[name]))
    assert changes
    for change, request in changes:
        assert check(request) == dict.fromkeys(CONFIGURATIONS, True), f"the {change} UPDATE derived from {name}"


@pytest.mark.parametrize("name", [n for n in CAPTURED_IDS if "ephemeralcontainers" in n])
def test_every_ephemeral_container_update_is_sent(name: str) -> None:
    request = copy.deepcopy(dict(CAPTURED)[name])
    assert request["subResource"] == "ephemeralcontainers"
    every = dict.fromkeys(CONFIGURATIONS, True)
    assert check(request) == every
    unchanged = {**request, "object": copy.deepcopy(request["oldObject"])}  # even one that adds nothing
    assert check(unchanged) == every
    for change, metadata_only in metadata_only_updates(request):
        ephemeral = {**metadata_only, "subResource": "ephemeralcontainers"}
        assert check(ephemeral) == every, change


@pytest.mark.parametrize("name", CAPTURED_IDS)
def test_no_operation_makes_an_expression_error(name: str) -> None:
    """CREATE has oldObject null, DELETE object null; whatever the rules select, no condition may error."""
    request = dict(CAPTURED)[name]
    current = request["object"]
    variants = {
        "create": {**request, "operation": "CREATE", "oldObject": None, "object": current},
        "delete": {**request, "operation": "DELETE", "object": None, "oldObject": current},
        "connect": {**request, "operation": "CONNECT", "object": None, "oldObject": None},
        "no-spec": {**request, "operation": "UPDATE", "object": {"kind": "X"}, "oldObject": {"kind": "X"}},
    }
    for variant, derived in variants.items():
        for hook in SHIPPED:
            for condition in hook.conditions:
                try:
                    evaluate(condition, derived)
                except ConditionError as exc:
                    raise AssertionError(f"{hook}, {variant} of {name}: {exc}") from None
