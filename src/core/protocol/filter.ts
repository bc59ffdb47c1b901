export interface FactFilter {
  fact: string;
  operator: string;
  value: string;
}

/** go-choria protocol/filter.go JSON model. */
export interface Filter {
  fact: FactFilter[];
  cf_class: string[];
  agent: string[];
  identity: string[];
  compound: { expr: string }[][];
}

export function emptyFilter(): Filter {
  return { fact: [], cf_class: [], agent: [], identity: [], compound: [] };
}

/** Same rule as go-choria's Filter.Empty: no entries in any of the five lists. */
export function isEmptyFilter(f: Filter | undefined): boolean {
  if (f === undefined || f === null) return true;
  return (
    (f.fact?.length ?? 0) === 0 &&
    (f.cf_class?.length ?? 0) === 0 &&
    (f.agent?.length ?? 0) === 0 &&
    (f.identity?.length ?? 0) === 0 &&
    (f.compound?.length ?? 0) === 0
  );
}
