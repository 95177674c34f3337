// The console's routes (pure): #/ releases · #/rollouts/NAME[/g/N][/SCREEN[/ARG[/TAB]]] · #/dora ·
// #/flags. Hash routes need nothing from the server, so deep links work under any sub-path.

/** `#/rollouts/checkout/g/2/step/run-3` → {screen: "step", rollout, generation, arg}. */
export function parseRoute(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "dora") return { screen: "dora" };
  if (parts[0] === "flags") return { screen: "flags" };
  if (parts[0] !== "rollouts" || !parts[1]) return { screen: "releases" };
  const r = { screen: "run", rollout: parts[1], generation: null, arg: null };
  let i = 2;
  if (parts[i] === "g" && /^\d+$/.test(parts[i + 1] ?? "")) {
    r.generation = Number(parts[i + 1]);
    i += 2;
  }
  if (parts[i]) {
    r.screen = parts[i];
    r.arg = parts[i + 1] ?? null;
    // A screen's tab (the step detail's overview, logs, artifacts, evidence).
    if (parts[i + 2]) r.tab = parts[i + 2];
  }
  return r;
}

/** The hash of a rollout screen. */
export function link(rollout, { generation = null, screen = null, arg = null, tab = null } = {}) {
  let h = `#/rollouts/${encodeURIComponent(rollout)}`;
  if (generation) h += `/g/${generation}`;
  if (screen) h += `/${screen}`;
  if (arg) h += `/${encodeURIComponent(arg)}`;
  if (arg && tab) h += `/${encodeURIComponent(tab)}`;
  return h;
}

