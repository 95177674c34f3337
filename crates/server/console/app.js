// The console's shell: sign-in, the router (#/ routes, so deep links and the back button work
// under any sub-path), the live event stream (one per tab) and the navigation.
//
// Routes: #/ releases · #/rollouts/NAME[/g/N][/SCREEN[/ARG]] with SCREEN one of step, stage,
// rollback, evidence, replay, schedule · #/dora · #/flags.
import { render } from "preact";
import { useState, useEffect, useRef } from "preact/hooks";
import { api, follow, takeTokenFromFragment, token } from "./lib/api.js";
import { html, Ctx, ErrorLine } from "./screens/widgets.js";
import { parseRoute } from "./lib/routes.js";
import { Releases } from "./screens/releases.js";
import { Run } from "./screens/run.js";
import { Step } from "./screens/step.js";
import { Stage } from "./screens/run.js";
import { Evidence } from "./screens/evidence.js";
import { Rollback } from "./screens/rollback.js";
import { Replay } from "./screens/replay.js";
import { Schedule } from "./screens/schedule.js";
import { Dora } from "./screens/dora.js";
import { Flags } from "./screens/flags.js";

takeTokenFromFragment();

function Login({ error, onToken }) {
  const [value, setValue] = useState("");
  return html`<main class="login"><h1>Vireo</h1>
    <form onSubmit=${(e) => {
      e.preventDefault();
      onToken(value.trim());
    }}>
      <label>API token <input type="password" autocomplete="off" value=${value} onInput=${(e) => setValue(e.target.value)} /></label>
      <button type="submit">Sign in</button>
    </form>
    <p class="muted">Create one with <code>vireo token create --role viewer --name you</code>; the admin's is <code>DATA_DIR/admin.token</code>.</p>
    <${ErrorLine} error=${error} /></main>`;
}

function App() {
  const [route, setRoute] = useState(parseRoute(location.hash));
  const [me, setMe] = useState(null);
  const [authError, setAuthError] = useState(null);
  const [tick, setTick] = useState(0);
  const [live, setLive] = useState("connecting");
  const pending = useRef(null);

  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);

  async function signIn() {
    if (!token.get()) return setMe(null);
    try {
      setMe(await api("api/v1/whoami"));
      setAuthError(null);
    } catch (e) {
      setMe(null);
      setAuthError(e);
    }
  }
  useEffect(() => {
    signIn();
  }, []);

  // Live: the event stream bumps `tick` (at most once a second); a 5 s poll covers what emits
  // no event (measurements of a running analysis). Both stop while the tab is hidden.
  useEffect(() => {
    if (!me) return;
    const bump = () => {
      if (pending.current) return;
      pending.current = setTimeout(() => {
        pending.current = null;
        setTick((t) => t + 1);
      }, 1000);
    };
    const stop = follow(bump, setLive);
    const poll = setInterval(() => !document.hidden && bump(), 5000);
    return () => {
      stop();
      clearInterval(poll);
    };
  }, [me]);

  if (!me) {
    return html`<${Login} error=${authError} onToken=${(t) => {
      token.set(t);
      signIn();
    }} />`;
  }
  const viewer = !(me.permissions ?? []).some((p) => p === "operate" || p === "approve");
  const screens = { releases: Releases, run: Run, step: Step, stage: Stage, rollback: Rollback, evidence: Evidence, replay: Replay, schedule: Schedule, dora: Dora, flags: Flags };
  const Screen = screens[route.screen] ?? Releases;
  return html`<${Ctx.Provider} value=${{ me, tick, live, refresh: () => setTick((t) => t + 1) }}>
    <header class="top">
      <a class="brand" href="#/">Vireo</a>
      <nav aria-label="main"><a href="#/" aria-current=${route.screen === "releases" ? "page" : null}>Releases</a>
        <a href="#/dora" aria-current=${route.screen === "dora" ? "page" : null}>DORA</a>
        <a href="#/flags" aria-current=${route.screen === "flags" ? "page" : null}>Flags</a></nav>
      <span class=${`live live-${live}`} title="updates from the event stream">${live}</span>
      <span class="who" data-testid="who">${me.name} (${(me.roles ?? []).join(", ")})${viewer ? " · read-only" : ""}</span>
      <button type="button" onClick=${() => {
        token.clear();
        setMe(null);
      }}>Sign out</button>
    </header>
    <main><${Screen} route=${route} /></main>
  <//>`;
}

render(html`<${App} />`, document.getElementById("app"));
