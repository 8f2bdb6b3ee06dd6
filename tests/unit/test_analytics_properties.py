"""The analytics count every stream record once, however Lambda delivers it.

Issue 11: "after a random workload with redelivered and reordered stream
batches, every figure equals a recomputation from the raw records". A random
market history becomes the registry's and the ledger's stream records
(tests/analytics_model.py builds them with the product's item mappings); they
are split into shards and delivered as Lambda delivers them to a function with
a tumbling window (in order the first time; again, out of order, after
crashes, races and for no reason at all), folded by the real
``chalicelib.services.analytics.fold`` on the in-memory adapter, and every
figure the services read is compared with the same figure recomputed plainly
from the history.
"""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.services.dependencies import Dependencies
from tests.analytics_model import (
    Clock,
    Plan,
    Scenario,
    actual_figures,
    delivery_plans,
    expected_figures,
    market_deps,
    reading_deps,
    redeliveries,
    run_plan,
    scenarios,
)
from tests.support import memory_market

# The history's generation dominates an example's time; memory folds are quick.
fast = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fold_on_memory(scenario: Scenario, plan: Plan) -> Dependencies:
    """The plan run on a fresh in-memory market; the market's dependencies."""
    clock = Clock(scenario.now_ms)
    deps = market_deps(memory_market().deps, scenario, clock)
    run_plan(plan, deps, clock)
    return deps


def assert_figures_match(scenario: Scenario, deps: Dependencies) -> None:
    actual = actual_figures(reading_deps(deps, scenario), scenario.history)
    expected = expected_figures(scenario)
    assert actual.keys() == expected.keys()
    for name, figure in expected.items():
        assert actual[name] == figure, name


@fast
@given(st.data())
def test_every_figure_equals_its_recomputation_when_the_functions_run_at_the_end(
    data: st.DataObject,
) -> None:
    """Every invocation at the read's instant (a fixed clock): the delivery's order,
    batching, repeats, crashes and races alone are under test."""
    scenario = data.draw(scenarios())
    plan = data.draw(delivery_plans(scenario, moving_clock=False))
    deps = fold_on_memory(scenario, plan)
    assert_figures_match(scenario, deps)


@fast
@given(st.data())
def test_every_figure_equals_its_recomputation_when_the_functions_run_as_the_market_does(
    data: st.DataObject,
) -> None:
    """Invocations follow the records (each first delivered within a day of being
    written, redelivered only while the stream keeps it): shard marks expire,
    sellers' hours and days are trimmed, and leaderboard bounds go stale."""
    scenario = data.draw(scenarios())
    plan = data.draw(delivery_plans(scenario, moving_clock=True))
    deps = fold_on_memory(scenario, plan)
    assert_figures_match(scenario, deps)


@fast
@given(st.data())
def test_a_batch_redelivered_after_its_shard_moved_on_changes_nothing(
    data: st.DataObject,
) -> None:
    """Given every record delivered once, when earlier batches (whole, halved,
    shuffled subsets) arrive again after their shards have moved on, then not one
    aggregate changes, not even its marks, and no write is made."""
    scenario = data.draw(scenarios(max_actions=25))
    plan = data.draw(delivery_plans(scenario, moving_clock=False))
    market = memory_market()
    clock = Clock(scenario.now_ms)
    deps = market_deps(market.deps, scenario, clock)
    run_plan(plan, deps, clock)
    before = copy.deepcopy(market.snapshot())

    firsts = [step for step in plan.invokes if step.first]
    again = []
    for _ in range(data.draw(st.integers(1, 6))):
        again.extend(redeliveries(data.draw, firsts, lambda batch: batch, scenario.now_ms))
    runs = run_plan(Plan(plan.shards, again), deps, clock)

    assert all(run.written == 0 for run in runs)
    assert market.snapshot() == before
    assert_figures_match(scenario, deps)
