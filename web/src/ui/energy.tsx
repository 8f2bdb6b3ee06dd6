// The options of an energy-type filter: a first "any" choice, then every energy type.

import { ENERGY_TYPES } from "../api/types";
import * as format from "../format";

export function EnergyTypeOptions({ any }: { any: string }) {
  return (
    <>
      <option value="">{any}</option>
      {ENERGY_TYPES.map((type) => (
        <option key={type} value={type}>
          {format.titleCase(type)}
        </option>
      ))}
    </>
  );
}
