// The visualizer: the real consensus core, simulated in WebAssembly (default), or a running
// node followed through its /status and /events (?live=http://127.0.0.1:8700).
// No framework, no CDN: this file, style.css and pkg/ (wasm/build.sh) are the whole site.

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const RING_RADIUS = 190;
const NODE_RADIUS = 38;
const MESSAGES_DRAWN_MAX = 400;
const LOG_LINES_MAX = 200;
// The time-space diagram: how much virtual time it shows, and most messages it draws.
const LAMPORT_WINDOW_MS = 800;
const LAMPORT_DRAWN_MAX = 400;
const ROUNDS_KEPT = 64;
const ROUNDS_SHOWN = 6;
// Kinds that are one signed consensus message each: a broadcast is signed once and sent
// n - 1 times, and a vote sent again or forwarded (a commit certificate to a node that
// lags) is the same signature, so "signed" counts (signer, kind) once per round (an
// equivocator's second vote is not counted twice).
const SIGNED_KINDS = new Set(['proposal', 'verification_vote', 'commit_vote', 'new_round']);
// Virtual milliseconds per real millisecond, by the speed slider's position.
const SPEEDS = { '-2': 0.02, '-1': 0.1, '0': 0.5, '1': 2, '2': 10 };

const state = {
  sim: null,
  playing: false,
  nextSeq: 0,
  heights: new Map(), // height -> {round, hash, atMs, txs}
  votes: new Map(), // "h/r" -> Map(voter -> {verification, commit})
  nodes: [],
  drag: null,
  live: false,
  // Faults injected by clicks, with the step and virtual time of each: links replay them.
  actions: [],
  nextSend: 0,
  panelsAt: -Infinity,
  pinnedRound: null, // "h/r" shown in the quorum matrix instead of the current round
  sends: [], // recent sends, for the time-space diagram
  commits: [], // recent commits {node, at, height}
  rounds: new Map(), // "h/r" -> {height, round, kinds, messages, signed: Set}
  frames: 0,
  framesSince: performance.now(),
};

function el(name, attrs = {}, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function position(i, n) {
  const a = (2 * Math.PI * i) / n - Math.PI / 2;
  return [RING_RADIUS * Math.cos(a), RING_RADIUS * Math.sin(a)];
}

function configFromInputs() {
  return {
    nodes: Number($('nodes').value),
    byzantine: Number($('byzantine').value),
    strategy: $('strategy').value,
    seed: Number($('seed').value),
    drop: Number($('drop').value),
  };
}

function inputsFromUrl() {
  for (const key of ['nodes', 'byzantine', 'seed', 'drop']) {
    if (params.has(key)) $(key).value = params.get(key);
  }
  if (params.has('strategy')) $('strategy').value = params.get('strategy');
  if (params.has('speed')) $('speed').value = params.get('speed');
}

// The link that replays the run on screen (not the inputs, which may have been edited since).
// With `atStep`, the link also names this exact point (events processed and virtual time)
// and opens there paused; either way it carries the faults clicked so far.
function shareUrl(atStep = false) {
  const c = state.sim ? JSON.parse(state.sim.configJson()) : configFromInputs();
  const q = new URLSearchParams({
    seed: c.seed, nodes: c.nodes, byzantine: c.byzantine, strategy: c.strategy,
    drop: c.drop, speed: $('speed').value, autoplay: state.playing && !atStep ? 1 : 0,
  });
  if (state.actions.length) {
    q.set('faults', state.actions.map((a) => `${a.code}:${a.steps}:${a.now}`).join(','));
  }
  if (atStep && state.sim) q.set('at', `${state.sim.stepsTaken()}:${state.sim.nowMs()}`);
  return `${location.pathname}?${q}`;
}

// Runs the simulation forward to exactly `steps` events processed and virtual time `now`.
function advanceTo(steps, now) {
  const sim = state.sim;
  while (sim.stepsTaken() < steps) {
    if (sim.stepMany(Math.min(steps - sim.stepsTaken(), 100000)) === 0) break;
  }
  if (sim.nowMs() < now) sim.runUntil(now);
}

// One fault by its code: c<i> crash, r<i> restart, p<groups> partition, h heal,
// b<strategy> the highest honest node turns Byzantine. Recorded
// (with where it happened) so that a link replays it.
function applyFault(code) {
  const sim = state.sim;
  const at = { code, steps: sim.stepsTaken(), now: sim.nowMs() };
  const node = Number(code.slice(1));
  if (code[0] === 'c') sim.crash(node);
  else if (code[0] === 'r') sim.restart(node);
  else if (code[0] === 'p') sim.partition(JSON.stringify([...code.slice(1)].map(Number)));
  else if (code === 'h') sim.heal();
  else if (code[0] === 'b') notice(`n${sim.makeByzantine(code.slice(1))} turned Byzantine (${code.slice(1)})`);
  else throw new Error(`unknown fault ${code}`);
  state.actions.push(at);
  history.replaceState(null, '', shareUrl());
}

// The faults and the point a link names, replayed on a fresh run of its seed.
function replayFromUrl() {
  try {
    for (const item of (params.get('faults') ?? '').split(',').filter(Boolean)) {
      const [code, steps, now] = item.split(':');
      advanceTo(Number(steps), Number(now));
      applyFault(code);
    }
    if (params.has('at')) {
      const [steps, now] = params.get('at').split(':').map(Number);
      advanceTo(steps, now);
    }
  } catch (e) {
    notice(`cannot replay the link: ${e.message ?? e}`);
  }
}

// A passing message (a refused click), cleared after a few seconds: not a safety verdict.
function notice(text) {
  $('notice').textContent = text;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => { $('notice').textContent = ''; }, 4000);
}

function newRun() {
  const config = configFromInputs();
  try {
    state.sim = new WasmSim(JSON.stringify(config));
  } catch (e) {
    notice(`cannot start: ${e.message ?? e}`);
    return;
  }
  state.nextSeq = 0;
  state.nextSend = 0;
  state.actions = [];
  state.sends = [];
  state.commits = [];
  state.rounds.clear();
  state.pinnedRound = null;
  state.heights.clear();
  state.votes.clear();
  $('log').replaceChildren();
  $('timeline').replaceChildren();
  $('violation').textContent = '';
  history.replaceState(null, '', shareUrl());
  render();
}

// ---- events: log, heights, quorum ----

function describe(entry) {
  const d = entry.data ?? {};
  const who = entry.node === null || entry.node === undefined ? '--' : `n${entry.node}`;
  const name = entry.kind === 'replica' ? d.event : entry.kind;
  const fields = Object.entries(d)
    .filter(([k]) => k !== 'event')
    .map(([k, v]) => `${k}=${typeof v === 'string' && v.length === 64 ? v.slice(0, 8) : JSON.stringify(v)}`)
    .join(' ');
  // Live events carry the node's wall clock; simulated ones virtual seconds from the start.
  const at = state.live
    ? new Date(entry.at_ms).toISOString().slice(11, 23)
    : (entry.at_ms / 1000).toFixed(3);
  return `${at} ${who} ${name} ${fields}`;
}

function absorb(entries) {
  const log = $('log');
  for (const entry of entries) {
    state.nextSeq = entry.seq + 1;
    const li = document.createElement('li');
    li.textContent = describe(entry);
    log.prepend(li);
    if (entry.kind !== 'replica') continue;
    const d = entry.data;
    // Commit dots for the time-space diagram (a simulation only; absorbSends trims them).
    if (d.event === 'committed' && !state.live && entry.node !== null && entry.node !== undefined) {
      state.commits.push({ node: entry.node, at: entry.at_ms, height: d.height });
    }
    if (d.event === 'committed' && !state.heights.has(d.height)) {
      state.heights.set(d.height, { round: d.round, hash: d.blockHash, atMs: entry.at_ms, txs: d.txs });
      // Remembered only to show each height once: forget those far below.
      for (const h of state.heights.keys()) {
        if (h + LOG_LINES_MAX < d.height) state.heights.delete(h); else break;
      }
      const item = document.createElement('li');
      item.value = d.height;
      const at = state.live ? new Date(entry.at_ms).toISOString().slice(11, 23) : `${(entry.at_ms / 1000).toFixed(3)} s`;
      item.textContent = `${d.blockHash.slice(0, 8)} round ${d.round}, ${d.txs} txs, at ${at}`;
      $('timeline').prepend(item);
    }
    if (d.event === 'vote_counted') {
      const key = `${d.height}/${d.round}`;
      if (!state.votes.has(key)) state.votes.set(key, new Map());
      const byVoter = state.votes.get(key);
      const seen = byVoter.get(d.voter) ?? {};
      seen[d.kind] = d.blockHash ? d.blockHash.slice(0, 8) : 'nil';
      byVoter.set(d.voter, seen);
      // Keep the panel's memory bounded: forget rounds far below.
      if (state.votes.size > 64) state.votes.delete(state.votes.keys().next().value);
    }
  }
  while (log.childElementCount > LOG_LINES_MAX) log.lastChild.remove();
  const timeline = $('timeline');
  while (timeline.childElementCount > LOG_LINES_MAX) timeline.lastChild.remove();
}

function renderQuorum(nodes) {
  const leader = nodes.find((n) => n.up && n.step) ?? nodes[0];
  let key = `${leader.height + 1}/${leader.round}`;
  let title = `height ${leader.height + 1}, round ${leader.round} (the current one)`;
  if (state.pinnedRound && state.votes.has(state.pinnedRound)) {
    key = state.pinnedRound;
    const [h, r] = key.split('/');
    title = `height ${h}, round ${r} (picked below; click it again for the current round)`;
  }
  $('quorum-title').textContent = title;
  const byVoter = state.votes.get(key) ?? new Map();
  const table = $('quorum');
  table.replaceChildren();
  const head = table.insertRow();
  for (const h of ['voter', 'verification', 'commit']) {
    const th = document.createElement('th');
    th.textContent = h;
    head.appendChild(th);
  }
  for (const n of nodes) {
    const row = table.insertRow();
    row.insertCell().textContent = `n${n.id}`;
    for (const kind of ['verification', 'commit']) {
      const cell = row.insertCell();
      const v = byVoter.get(n.id)?.[kind];
      cell.textContent = v ?? '';
      if (v) cell.className = v === 'nil' ? 'nil' : 'yes';
    }
  }
}

function renderInvariants(violations) {
  const box = $('invariants');
  const bad = violations.length > 0;
  box.className = bad ? 'bad' : 'ok';
  // Violations are tagged by "check": agreement (S1), validity (S2), double_sign (S3).
  const checks = new Set(violations.map((v) => v.check));
  $('inv-agreement').className = checks.has('agreement') ? 'bad' : '';
  $('inv-validity').className = checks.has('validity') ? 'bad' : '';
  $('inv-double-vote').className = checks.has('double_sign') ? 'bad' : '';
  if (bad) {
    $('violation').textContent = `seed ${JSON.parse(state.sim.configJson()).seed}: ${JSON.stringify(violations[0])}\n` +
      (state.actions.length
        ? `your clicks are not in a native seed line; this link replays them: ${location.origin}${shareUrl(true)}`
        : `replay: tinyweb sim ${state.sim.replayArgs()}`);
  }
}

// ---- sends: per-round counts and the time-space diagram ----

function absorbSends(sends, now) {
  for (const m of sends) {
    state.nextSend = m.seq + 1;
    state.sends.push(m);
    if (m.height === null || m.height === undefined) continue;
    const key = `${m.height}/${m.round}`;
    let r = state.rounds.get(key);
    if (!r) {
      r = { height: m.height, round: m.round, kinds: {}, messages: 0, signed: new Set() };
      state.rounds.set(key, r);
      if (state.rounds.size > ROUNDS_KEPT) state.rounds.delete(state.rounds.keys().next().value);
    }
    r.messages += 1;
    r.kinds[m.kind] = (r.kinds[m.kind] ?? 0) + 1;
    if (SIGNED_KINDS.has(m.kind)) r.signed.add(`${m.signer}|${m.kind}`);
  }
  const horizon = now - LAMPORT_WINDOW_MS;
  state.sends = state.sends.filter((m) => (m.arrives_ms ?? m.sent_ms) >= horizon).slice(-4 * LAMPORT_DRAWN_MAX);
  state.commits = state.commits.filter((c) => c.at >= horizon);
}

function renderRoundCounts() {
  const table = $('round-counts');
  table.replaceChildren();
  const head = table.insertRow();
  for (const h of ['h/r', 'prop.', 'verif.', 'commit', 'new rd', 'msgs', 'signed']) {
    const th = document.createElement('th');
    th.textContent = h;
    head.appendChild(th);
  }
  const rows = [...state.rounds.values()]
    .sort((a, b) => b.height - a.height || b.round - a.round)
    .slice(0, ROUNDS_SHOWN);
  for (const r of rows) {
    const row = table.insertRow();
    const key = `${r.height}/${r.round}`;
    // A row picks its round for the quorum matrix above (votes as the nodes counted them).
    row.className = key === state.pinnedRound ? 'pinned' : '';
    row.title = 'show this round in the quorum matrix';
    row.onclick = () => {
      state.pinnedRound = state.pinnedRound === key ? null : key;
      state.panelsAt = -Infinity;
      render();
    };
    row.insertCell().textContent = key;
    for (const k of ['proposal', 'verification_vote', 'commit_vote', 'new_round']) {
      row.insertCell().textContent = String(r.kinds[k] ?? 0);
    }
    row.insertCell().textContent = String(r.messages);
    row.insertCell().textContent = String(r.signed.size);
  }
}

function renderLamport(n, now) {
  const svg = $('lamport');
  svg.replaceChildren();
  const lane = 30;
  const left = 34;
  const width = 800;
  const height = 14 + n * lane;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  // The newest messages drawn decide how far back the diagram reaches (at 10 nodes the
  // window shrinks so that what is drawn still fills it).
  const drawn = state.sends.slice(-LAMPORT_DRAWN_MAX);
  const start = Math.min(now - 1, Math.max(now - LAMPORT_WINDOW_MS, drawn[0]?.sent_ms ?? 0));
  const span = now - start;
  const x = (t) => left + ((t - start) / span) * (width - left - 6);
  $('lamport-span').textContent = `${Math.round(span)} ms`;
  const y = (i) => 12 + i * lane;
  for (let i = 0; i < n; i++) {
    el('line', { x1: left, y1: y(i), x2: width - 6, y2: y(i), class: 'lane' }, svg);
    el('text', { x: 4, y: y(i) + 4 }, svg).textContent = `n${i}`;
  }
  const lines = el('g', {}, svg);
  for (const m of drawn) {
    const kind = m.kind.startsWith('sync') ? 'sync' : m.kind;
    const attrs = { x1: x(m.sent_ms), y1: y(m.from), stroke: `var(--${kind})`, class: 'msg' };
    if (m.arrives_ms === null) {
      // Lost or cut off: a dashed stub toward the receiver.
      Object.assign(attrs, { x2: x(m.sent_ms + 40), y2: y(m.from) + (y(m.to) - y(m.from)) / 3, class: 'msg lost' });
    } else {
      const end = Math.min(m.arrives_ms, now);
      const p = m.arrives_ms === m.sent_ms ? 1 : (end - m.sent_ms) / (m.arrives_ms - m.sent_ms);
      Object.assign(attrs, { x2: x(end), y2: y(m.from) + (y(m.to) - y(m.from)) * p });
    }
    el('line', attrs, lines);
  }
  for (const c of state.commits.filter((c) => c.at >= start)) {
    el('circle', { cx: x(c.at), cy: y(c.node), r: 3, class: 'commit' }, svg).appendChild(
      el('title', {})).textContent = `n${c.node} committed height ${c.height}`;
  }
}

// ---- the ring ----

function renderRing(nodes, flying, nowMs) {
  const svg = $('ring');
  svg.replaceChildren();
  const n = nodes.length;
  if (nodes.some((x) => x.group !== 0)) {
    // The cut: between groups, drawn as dashed chords from the centre.
    for (let i = 0; i < n; i++) {
      const j = (i + 1) % n;
      if (nodes[i].group !== nodes[j].group) {
        const a = (2 * Math.PI * (i + 0.5)) / n - Math.PI / 2;
        el('line', { x1: 0, y1: 0, x2: 250 * Math.cos(a), y2: 250 * Math.sin(a), class: 'cut' }, svg);
      }
    }
  }
  const messages = el('g', {}, svg);
  for (const m of flying.slice(0, MESSAGES_DRAWN_MAX)) {
    const [x1, y1] = position(m.from, n);
    const [x2, y2] = position(m.to, n);
    const span = Math.max(1, m.arrives_ms - m.sent_ms);
    const p = Math.min(1, Math.max(0, (nowMs - m.sent_ms) / span));
    const x = x1 + (x2 - x1) * p;
    const y = y1 + (y2 - y1) * p;
    const kind = m.kind.startsWith('sync') ? 'sync' : m.kind;
    const color = `var(--${kind})`;
    const tail = Math.max(0, p - 0.25);
    el('line', {
      x1: x1 + (x2 - x1) * tail, y1: y1 + (y2 - y1) * tail, x2: x, y2: y,
      class: `msg k-${m.kind}`, stroke: color,
    }, messages);
    el('circle', { cx: x, cy: y, r: 4, fill: color, 'data-kind': m.kind }, messages);
  }
  for (const node of nodes) {
    const [x, y] = position(node.id, n);
    const classes = ['node', node.up ? 'up' : 'down'];
    if (node.role.role === 'byzantine') classes.push('byzantine');
    if (node.group !== 0) classes.push('group1');
    const g = el('g', { class: classes.join(' '), 'data-node': node.id, transform: `translate(${x},${y})` }, svg);
    el('circle', { r: NODE_RADIUS }, g);
    el('text', { y: -8, class: 'id' }, g).textContent = `n${node.id}`;
    el('text', { y: 7 }, g).textContent = `h${node.height} r${node.round}`;
    const step = node.up ? (node.role.role === 'byzantine' ? node.role.strategy : node.step ?? '') : 'down';
    el('text', { y: 21 }, g).textContent = step;
    if (node.locked) {
      el('text', { y: -NODE_RADIUS - 6 }, g).textContent = `locked ${node.locked.blockHash.slice(0, 6)} r${node.locked.round}`;
    }
    g.addEventListener('pointerdown', (ev) => { state.drag = node.id; ev.preventDefault(); });
    g.addEventListener('pointerup', () => release(node.id));
  }
}

function release(target) {
  const from = state.drag;
  state.drag = null;
  if (from === null || !state.sim) return;
  try {
    if (from === target) {
      const node = state.nodes[target];
      if (node.role.role === 'byzantine') {
        notice(`n${target} is Byzantine: the coalition cannot be crashed, only honest nodes`);
      } else applyFault(`${node.up ? 'c' : 'r'}${target}`);
    } else {
      // The arc from `from` clockwise to `target` becomes the other side.
      const n = state.nodes.length;
      const groups = new Array(n).fill(0);
      for (let i = from; ; i = (i + 1) % n) {
        groups[i] = 1;
        if (i === target) break;
      }
      applyFault(`p${groups.join('')}`);
    }
  } catch (e) {
    notice(String(e.message ?? e));
  }
  render();
}

function render() {
  const sim = state.sim;
  if (!sim) return;
  const nodes = JSON.parse(sim.nodesJson());
  state.nodes = nodes;
  absorb(JSON.parse(sim.eventsSinceJson(state.nextSeq)));
  const now = sim.nowMs();
  absorbSends(JSON.parse(sim.sendsSinceJson(state.nextSend)), now);
  renderRing(nodes, JSON.parse(sim.inFlightJson()), now);
  // The panels below the ring change more slowly than a frame: 8 times a second is enough.
  const t = performance.now();
  if (!(t - state.panelsAt < 125)) {
    state.panelsAt = t;
    renderLamport(nodes.length, now);
    renderRoundCounts();
  }
  renderQuorum(nodes);
  renderInvariants(JSON.parse(sim.violationsJson()));
  $('committed-height').textContent = String(sim.committedHeight());
  $('clock').textContent = `${(now / 1000).toFixed(3)} s`;
  $('phase').textContent = sim.phase();
  $('trace-hash').textContent = sim.traceHash();
  $('replay').textContent = `tinyweb sim ${sim.replayArgs()}`;
}

// ---- simulation loop ----

let last = performance.now();
function frame(t) {
  const dt = Math.min(100, t - last);
  last = t;
  if (state.playing && state.sim) {
    const factor = SPEEDS[$('speed').value] ?? 0.5;
    state.sim.runUntil(state.sim.nowMs() + dt * factor);
    render();
  }
  state.frames += 1;
  if (t - state.framesSince > 1000) {
    $('fps').textContent = `${Math.round((state.frames * 1000) / (t - state.framesSince))} fps`;
    state.frames = 0;
    state.framesSince = t;
  }
  requestAnimationFrame(frame);
}

function setPlaying(on) {
  state.playing = on;
  $('play').textContent = on ? '❚❚ pause' : '▶ play';
  history.replaceState(null, '', shareUrl());
}

function wireControls() {
  $('play').onclick = () => setPlaying(!state.playing);
  $('step').onclick = () => { state.sim?.stepMany(1); render(); };
  $('restart-run').onclick = newRun;
  $('new-seed').onclick = () => { $('seed').value = Math.floor(Math.random() * 1e9); newRun(); };
  $('heal').onclick = () => { if (state.sim) { applyFault('h'); render(); } };
  $('make-byzantine').onclick = () => {
    if (!state.sim) return;
    try {
      applyFault(`b${$('strategy').value}`);
    } catch (e) {
      notice(String(e.message ?? e));
    }
    render();
  };
  $('copy-step').onclick = () => {
    const url = location.origin + shareUrl(true);
    navigator.clipboard?.writeText(url).catch(() => {});
    history.replaceState(null, '', shareUrl(true));
    notice('link to this step copied (and in the address bar)');
  };
  $('speed').oninput = () => {
    $('speed-label').textContent = `${SPEEDS[$('speed').value]}×`;
    history.replaceState(null, '', shareUrl());
  };
  $('share').onclick = (e) => { e.preventDefault(); navigator.clipboard?.writeText(location.origin + shareUrl()).catch(() => {}); };
  document.addEventListener('pointerup', () => { state.drag = null; });
  document.addEventListener('keydown', (e) => {
    if (e.target.tagName === 'INPUT') return;
    if (e.key === ' ') { e.preventDefault(); setPlaying(!state.playing); }
    if (e.key === 's') $('step').click();
  });
  $('speed-label').textContent = `${SPEEDS[$('speed').value]}×`;
}

// ---- live mode ----

const LIVE_POLL_MS = 500;
const LIVE_TIMEOUT_MS = 1500;

// One node's /status, or null if it does not answer in time (down, or refusing).
async function statusOf(url) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), LIVE_TIMEOUT_MS);
  try {
    const r = await fetch(`${url}/status`, { signal: abort.signal, cache: 'no-store' });
    return r.ok ? await r.json() : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

// Follows a running cluster: every validator's /status (each node allows the pages of its
// chain's validators to read it), and the core's events of the node the page names.
async function live(base) {
  $('mode').textContent = `live: ${base}`;
  state.live = true;
  $('controls').hidden = true;
  // The checker, the message views and the ring hint belong to the simulator (a node does
  // not publish its messages).
  for (const id of ['invariants', 'lamport-panel', 'round-counts-panel', 'legend']) $(id).hidden = true;
  document.querySelector('.hint').hidden = true;
  $('clock-label').textContent = 'polled at';
  $('replay').textContent = '(a live cluster)';
  $('trace-hash').textContent = '(a live cluster)';
  let members = new Map(); // id -> url, learned from the named node's peer list
  const poll = async () => {
    const first = await statusOf(base);
    if (!first) {
      notice(`cannot reach ${base}`);
    } else if (first.id !== null && first.id !== undefined) {
      members = new Map([[first.id, base], ...(first.peers ?? []).map((p) => [p.id, `http://${p.address}`])]);
    }
    const ids = [...members.keys()].sort((a, b) => a - b);
    const statuses = await Promise.all(ids.map((id) => (members.get(id) === base ? first : statusOf(members.get(id)))));
    const nodes = ids.map((id, i) => {
      const s = statuses[i];
      if (!s) return { id, up: false, height: '?', round: '?', step: 'down', group: 0, role: { role: 'honest' } };
      return {
        id, up: true, height: s.height, round: s.round, proposer: s.proposer,
        step: s.halted ? 'halted' : s.step, group: 0, role: { role: 'honest' },
      };
    });
    state.nodes = nodes;
    renderRing(nodes, [], 0);
    if (nodes.some((n) => n.up)) renderQuorum(nodes);
    const heights = nodes.filter((n) => n.up).map((n) => n.height);
    $('committed-height').textContent = heights.length ? String(Math.min(...heights)) : '0';
    $('phase').textContent = `${heights.length}/${nodes.length} nodes answering`;
    $('clock').textContent = new Date().toLocaleTimeString();
  };
  // One odd answer must not stop the polling for good.
  const loop = async () => {
    try {
      await poll();
    } catch (e) {
      notice(`live view: ${e.message ?? e}`);
    } finally {
      setTimeout(loop, LIVE_POLL_MS);
    }
  };
  await loop();
  const events = new EventSource(`${base}/events`);
  let seq = 0;
  events.onmessage = (m) => {
    const item = JSON.parse(m.data);
    absorb([{ seq: seq++, at_ms: item.timeMs ?? 0, node: item.node ?? null, kind: 'replica', data: item.event }]);
  };
}

// ---- start ----

let WasmSim;
async function main() {
  inputsFromUrl();
  wireControls();
  window.tinyweb = { state, render }; // for tests and the curious
  if (params.has('live')) {
    await live(params.get('live'));
    return;
  }
  const pkg = await import('./pkg/tinyweb_wasm.js');
  await pkg.default();
  WasmSim = pkg.WasmSim;
  window.tinyweb.pkg = pkg;
  newRun();
  replayFromUrl();
  render();
  setPlaying(params.get('autoplay') === '1' && !params.has('at'));
  requestAnimationFrame(frame);
}

main().catch((e) => { $('violation').textContent = `failed to start: ${e}`; });
