"""Carbon factors and arithmetic, without storage: the data file, the rule, rounding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.config import Settings
from chalicelib.domain import carbon
from chalicelib.domain.carbon import (
    DEFAULT_G_CO2_PER_KWH,
    FACTORS_FILE,
    Basis,
    Bought,
    Equivalent,
    Factors,
)
from chalicelib.services.carbon import factors as configured_factors

ROOT = Path(__file__).resolve().parents[2]


def made_up(**grid: int) -> Factors:
    """Factors with figures of our own, so the arithmetic does not hang on the data file."""
    return Factors(
        grid=MappingProxyType(grid or {"AA": 500, "BB": 100}),
        life_cycle=MappingProxyType({"solar": 50, "wind": 10, "hydro": 20}),
        defaults=MappingProxyType(dict(DEFAULT_G_CO2_PER_KWH)),
        equivalents=(
            Equivalent("trees", "trees a year", 21_000, "made up"),
            Equivalent("car_km", "km", 250, "made up"),
        ),
        source="made up",
    )


# -- the data file ------------------------------------------------------------------


def test_the_data_file_names_its_sources_years_and_licence() -> None:
    document = json.loads(FACTORS_FILE.read_text(encoding="utf-8"))
    grid = document["grid_intensity"]
    assert "Ember" in grid["source"] and grid["year"] == 2024
    assert grid["licence"].startswith("CC BY")
    assert grid["url"].startswith("https://")
    life_cycle = document["life_cycle"]
    assert "IPCC" in life_cycle["source"] and "Annex III" in life_cycle["source"]
    assert life_cycle["year"] == 2014
    for name, entry in document["equivalents"].items():
        if isinstance(entry, dict):
            assert entry["source"] and entry["unit"], name


def test_the_published_factors_cover_the_major_countries_as_whole_grams() -> None:
    published = carbon.published_factors()
    assert len(published.grid) >= 25
    assert {"US", "DE", "FR", "GB", "CN", "IN", "JP", "BR", "AU", "ZA"} <= set(published.grid)
    assert all(isinstance(g, int) and 0 <= g < 1_500 for g in published.grid.values())
    # IPCC AR5 WG3 Annex III medians: utility PV, onshore wind, hydropower.
    assert dict(published.life_cycle) == {"solar": 48, "wind": 11, "hydro": 24}
    assert dict(published.defaults) == DEFAULT_G_CO2_PER_KWH
    # equivalent_trees keeps the original release's 21 kg a tree.
    assert published.equivalent("trees").g_co2_per_unit == 21_000


def test_the_file_is_read_once_and_only_when_carbon_is_computed() -> None:
    # A fresh interpreter, as a Lambda cold start: loading every RPC method
    # reads nothing; the first figure reads the file, the second the cache.
    probe = (
        "import chalicelib.rpc.methods\n"
        "from chalicelib.domain import carbon\n"
        "print(carbon.published_factors.cache_info().currsize)\n"
        "carbon.published_factors(); carbon.published_factors()\n"
        "print(carbon.published_factors.cache_info().misses)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert ran.stdout.split() == ["0", "1"]


@pytest.mark.parametrize(
    ("where", "change", "complaint"),
    [
        ("grid", {"US": 383.5}, "whole number"),
        ("grid", {"US": -1}, "whole number"),
        ("grid", {"us": 383}, "not a jurisdiction"),
        ("life_cycle", {"coal": 820}, "not an energy type"),
        ("life_cycle", {"solar": True}, "whole number"),
    ],
)
def test_a_malformed_data_file_is_refused_on_load(
    where: str, change: dict[str, Any], complaint: str
) -> None:
    document = json.loads(FACTORS_FILE.read_text(encoding="utf-8"))
    table = document["grid_intensity" if where == "grid" else "life_cycle"]["g_co2e_per_kwh"]
    table.update(change)
    with pytest.raises(ValueError, match=complaint):
        carbon.factors_from(document)


def test_a_data_file_without_trees_is_refused() -> None:
    document = json.loads(FACTORS_FILE.read_text(encoding="utf-8"))
    del document["equivalents"]["trees"]
    with pytest.raises(ValueError, match="trees"):
        carbon.factors_from(document)


# -- the factor of a kWh ----------------------------------------------------------------


def test_a_kwh_avoids_its_grid_intensity_less_its_technology_life_cycle() -> None:
    factors = made_up()
    solar = factors.factor("solar", "AA")
    assert (solar.g_co2_per_kwh, solar.basis, solar.grid_jurisdiction) == (450, Basis.GRID, "AA")
    assert factors.factor("wind", "AA").g_co2_per_kwh == 490
    assert factors.factor("hydro", "BB").g_co2_per_kwh == 80


def test_published_figures_give_the_documented_factors() -> None:
    published = carbon.published_factors()
    assert published.factor("solar", "US").g_co2_per_kwh == 383 - 48
    assert published.factor("wind", "DE").g_co2_per_kwh == 342 - 11
    assert published.factor("hydro", "IN").g_co2_per_kwh == 708 - 24


def test_a_subdivision_falls_back_to_its_country_unless_it_has_a_figure() -> None:
    factors = made_up(US=383, US_TX=400)
    california = factors.factor("solar", "US_CA")
    assert (california.g_co2_per_kwh, california.grid_jurisdiction) == (333, "US")
    texas = factors.factor("solar", "US_TX")
    assert (texas.g_co2_per_kwh, texas.grid_jurisdiction) == (350, "US_TX")


@pytest.mark.parametrize("jurisdiction", ["AQ", "AQ_X", None])
def test_without_a_published_figure_the_original_default_applies(
    jurisdiction: str | None,
) -> None:
    factors = made_up()
    for energy_type, grams in (("solar", 400), ("wind", 400), ("hydro", 20)):
        factor = factors.factor(energy_type, jurisdiction)
        assert (factor.g_co2_per_kwh, factor.basis) == (grams, Basis.DEFAULT)
        assert factor.grid_jurisdiction is None


def test_a_grid_cleaner_than_the_technology_avoids_nothing_not_less() -> None:
    factor = made_up(NO=30).factor("solar", "NO")
    assert (factor.g_co2_per_kwh, factor.basis) == (0, Basis.GRID)
    assert carbon.published_factors().factor("solar", "SE").g_co2_per_kwh == 0


def test_battery_energy_avoids_nothing_anywhere_whatever_the_defaults_say() -> None:
    factors = made_up().overridden(grid={}, life_cycle={}, defaults={"battery": 300})
    for jurisdiction in ("AA", "AQ", None):
        factor = factors.factor("battery", jurisdiction)
        assert (factor.g_co2_per_kwh, factor.basis) == (0, Basis.STORED)


# -- totals and rounding ------------------------------------------------------------


def test_the_total_is_rounded_down_once_over_all_origins() -> None:
    # Each origin avoids 0.5 g: rounded line by line that would be nothing.
    factors = made_up(AA=51, BB=51)  # 1 g/kWh net of solar's 50
    offset = carbon.offset({"solar": 1_000}, {("solar", "AA"): 500, ("solar", "BB"): 500}, factors)
    assert [line.g_co2 for line in offset.lines] == [0, 0]
    assert offset.g_co2 == 1
    less = carbon.offset({"solar": 999}, {("solar", "AA"): 500, ("solar", "BB"): 499}, factors)
    assert less.g_co2 == 0  # 0.999 g: down, never up


def test_kilograms_and_equivalents_are_exact_and_whole() -> None:
    offset = carbon.offset({"wind": 100_000}, {("wind", "AA"): 100_000}, made_up())
    assert offset.g_co2 == 49_000  # 100 kWh x 490 g
    assert str(offset.kg_co2) == "49"
    assert offset.equivalent_trees == 2  # 49 kg / 21 kg a tree, whole trees
    assert [(e.name, n) for e, n in offset.equivalents()] == [("trees", 2), ("car_km", 196)]


def test_origins_without_energy_drop_out_and_lines_come_sorted() -> None:
    offset = carbon.offset(
        {"solar": 1_000, "wind": 0},
        {("wind", "BB"): 0, ("solar", "BB"): 400, ("solar", None): 100, ("solar", "AA"): 500},
        made_up(),
    )
    assert [(line.energy_type, line.jurisdiction) for line in offset.lines] == [
        ("solar", None),
        ("solar", "AA"),
        ("solar", "BB"),
    ]
    assert dict(offset.bought_wh) == {"solar": 1_000, "wind": 0}


@given(
    st.dictionaries(
        st.tuples(
            st.sampled_from(["solar", "wind", "hydro", "battery"]),
            st.sampled_from(["AA", "BB", "AQ", None]),
        ),
        st.integers(min_value=0, max_value=10**12),
    )
)
def test_the_total_is_the_exact_sum_rounded_down(wh_by_origin: dict[Any, int]) -> None:
    factors = made_up()
    offset = carbon.offset({}, wh_by_origin, factors)
    exact_mg = sum(wh * factors.factor(t, j).g_co2_per_kwh for (t, j), wh in wh_by_origin.items())
    assert offset.g_co2 == exact_mg // 1000
    lines = sum(line.g_co2 for line in offset.lines)
    assert lines <= offset.g_co2 < lines + len(offset.lines) + 1


# -- what the ledger kept -------------------------------------------------------------


def test_energy_bought_before_jurisdictions_were_kept_counts_as_unknown() -> None:
    legacy = Bought({"solar": 3_000, "hydro": 500}, {})
    assert legacy.origins() == {("solar", None): 3_000, ("hydro", None): 500}
    offset = carbon.offset(legacy.wh_by_type, legacy.origins(), made_up())
    assert offset.g_co2 == 3 * 400 + 500 * 20 // 1000  # the original defaults


def test_a_ledger_item_with_both_kinds_of_energy_splits_them() -> None:
    # 1,000 Wh bought before the upgrade, 2,000 after from AA.
    mixed = Bought({"solar": 3_000}, {("solar", "AA"): 2_000})
    assert mixed.origins() == {("solar", None): 1_000, ("solar", "AA"): 2_000}


def test_revoking_energy_bought_before_the_upgrade_takes_it_off_the_unknown_part() -> None:
    # 1,000 Wh from BB bought before; 2,000 from AA since; then the old 1,000
    # is revoked: its origin counter goes below zero, the type's total down.
    revoked = Bought({"solar": 2_000}, {("solar", "AA"): 2_000, ("solar", "BB"): -1_000})
    assert revoked.origins() == {("solar", "AA"): 2_000}


# -- what the operator sets -----------------------------------------------------------


def test_an_operator_figure_overrides_the_published_one_and_says_so() -> None:
    settings = Settings(
        carbon_grid_g_co2_per_kwh={"US_CA": 200},
        carbon_life_cycle_g_co2_per_kwh={"solar": 41},
    )
    factors = configured_factors(settings)
    factor = factors.factor("solar", "US_CA")
    assert (factor.g_co2_per_kwh, factor.grid_jurisdiction) == (159, "US_CA")
    assert factors.factor("solar", "US_NY").g_co2_per_kwh == 383 - 41
    assert factors.source.endswith("set by the operator: grid US_CA; life cycle solar")
    # Without settings of its own a deployment uses the published figures as they are.
    assert configured_factors(Settings()) is carbon.published_factors()


def test_operator_factors_are_read_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARBON_GRID_G_CO2_PER_KWH", '{"DE_BY": 250}')
    monkeypatch.setenv("CARBON_G_CO2_PER_KWH", '{"solar": 350, "wind": 400, "hydro": 20}')
    settings = Settings()
    assert settings.carbon_grid_g_co2_per_kwh == {"DE_BY": 250}
    factors = configured_factors(settings)
    assert factors.factor("solar", "AQ").g_co2_per_kwh == 350
    assert "default solar" in factors.source


@pytest.mark.parametrize(
    "overrides",
    [
        {"carbon_grid_g_co2_per_kwh": {"california": 200}},
        {"carbon_grid_g_co2_per_kwh": {"US": -5}},
        {"carbon_life_cycle_g_co2_per_kwh": {"nuclear": 12}},
        {"carbon_g_co2_per_kwh": {"solar": -400}},
    ],
)
def test_operator_factors_that_make_no_sense_are_refused_at_start(
    overrides: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)


# ISO 3166-1 alpha-2 codes, space-separated.
EU = "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK"
G20 = "AR AU BR CA CN DE FR GB ID IN IT JP KR MX RU SA TR US ZA"


def test_every_eu_member_and_g20_country_has_a_grid_figure() -> None:
    # docs/carbon.md says so.
    assert set(carbon.published_factors().grid) >= {*EU.split(), *G20.split()}


def test_the_worked_example_of_docs_carbon_md() -> None:
    bought: dict[carbon.Origin, int] = {
        ("solar", "US_CA"): 10_000,
        ("wind", "DE"): 2_345,
        ("hydro", "AQ"): 1_049,
        ("battery", "DE"): 3_000,
    }
    offset = carbon.offset(
        {"solar": 10_000, "wind": 2_345, "hydro": 1_049, "battery": 3_000},
        bought,
        carbon.published_factors(),
    )
    lines = {
        (line.energy_type, line.factor.g_co2_per_kwh, line.milligrams, line.g_co2)
        for line in offset.lines
    }
    assert lines == {
        ("solar", 335, 3_350_000, 3_350),
        ("wind", 331, 776_195, 776),
        ("hydro", 20, 20_980, 20),
        ("battery", 0, 0, 0),
    }
    assert (offset.g_co2, str(offset.kg_co2)) == (4_147, "4.147")
    assert sum(line.g_co2 for line in offset.lines) == 4_146
    assert [(e.name, n) for e, n in offset.equivalents()] == [
        ("trees", 0),
        ("car_km", 16),
        ("grid_kwh", 8),
    ]
    guide = (ROOT / "docs" / "carbon.md").read_text(encoding="utf-8")
    assert "**4,147 g**" in guide and "3,350,000" in guide and "776,195" in guide
