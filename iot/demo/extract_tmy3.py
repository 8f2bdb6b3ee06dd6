"""Cut one NREL TMY3 station file down to what the demo fleet needs: GHI, wind speed, air temperature.

The source files are the TMY3 CSVs that pvlib-python ships as test data (``pvlib/data/``
in its wheel); this script only reads them, so the project never needs pvlib itself:

    pip download pvlib --no-deps -d /tmp/pvlib
    unzip -o /tmp/pvlib/pvlib-*.whl 'pvlib/data/*' -d /tmp/pvlib
    python -m iot.demo.extract_tmy3 /tmp/pvlib/pvlib/data/723170TYA.CSV \\
        iot/demo/data/tmy3_723170.csv --origin "pvlib-python 0.16.1 wheel, pvlib/data/723170TYA.CSV"

The output is read by :func:`iot.demo.profiles.load_weather`.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

HOURS_PER_YEAR = 8760

GHI = "GHI (W/m^2)"
WIND = "Wspd (m/s)"
TEMPERATURE = "Dry-bulb (C)"


def extract(source: Path, origin: str) -> str:
    """The compact CSV text for the TMY3 file ``source``."""
    with source.open(newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        station_id, name, state, utc_offset, latitude, longitude, elevation = next(rows)
        header = next(rows)
        ghi, wind, temperature = (header.index(column) for column in (GHI, WIND, TEMPERATURE))
        records = list(rows)
    if len(records) != HOURS_PER_YEAR:
        raise ValueError(f"{source}: {len(records)} rows, expected {HOURS_PER_YEAR}")
    if (records[0][1], records[-1][1]) != ("01:00", "24:00"):
        raise ValueError(f"{source}: rows do not run from 01:00 to 24:00")
    years = sorted({record[0][-4:] for record in records})
    lines = [
        f"# NREL TMY3 (Typical Meteorological Year 3) hourly data, station {station_id} {name}, {state}",
        f"# source: National Solar Radiation Database 1991-2005 Update, TMY3; copied from {origin}",
        "# licence: produced by the National Renewable Energy Laboratory (NREL) for the US Department",
        "#   of Energy and published for free, unrestricted use (US public domain); no endorsement implied",
        f"# station_id: {station_id}",
        f"# name: {name}",
        f"# state: {state}",
        f"# latitude: {float(latitude):.3f}",
        f"# longitude: {float(longitude):.3f}",
        f"# utc_offset_hours: {float(utc_offset):.1f}",
        f"# elevation_m: {float(elevation):.0f}",
        f"# typical months drawn from the years {years[0]}-{years[-1]}",
        "# rows: 8760, row i (from 0) is the hour ending at i+1 h after 1 January 00:00 local",
        "#   standard time (no daylight saving): 1 Jan 01:00 first, 31 Dec 24:00 last",
        "# ghi_w_m2: global horizontal irradiance, mean over the hour, W/m^2 (integer)",
        "# wind_m_s: wind speed at 10 m, observed at the end of the hour, m/s (one decimal)",
        "# temp_c: dry-bulb air temperature, observed at the end of the hour, deg C (one decimal)",
        "ghi_w_m2,wind_m_s,temp_c",
    ]
    for record in records:
        lines.append(
            f"{round(float(record[ghi]))},{_decimal(record[wind])},{_decimal(record[temperature])}"
        )
    return "\n".join(lines) + "\n"


def _decimal(text: str) -> str:
    value = f"{float(text):.1f}"
    return "0.0" if value == "-0.0" else value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iot.demo.extract_tmy3", description=__doc__)
    parser.add_argument("source", type=Path, help="a TMY3 CSV file (e.g. pvlib/data/723170TYA.CSV)")
    parser.add_argument("target", type=Path, help="where to write the compact CSV")
    parser.add_argument("--origin", default="", help="where the source file came from")
    args = parser.parse_args(argv)
    origin = args.origin or args.source.name
    try:
        text = extract(args.source, origin)
    except (OSError, ValueError, StopIteration) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.target.write_text(text, encoding="utf-8")
    print(f"{args.target}: {len(text.encode())} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
