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
function shareUrl() {
  const c = state.sim ? JSON.parse(state.sim.configJson()) : configFromInputs();
  const q = new URLSearchParams({
    seed: c.seed, nodes: c.nodes, byzantine: c.byzantine, strategy: c.strategy,
    drop: c.drop, speed: $('speed').value, autoplay: state.playing ? 1 : 0,
  });
  return `${location.pathname}?${q}`;
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
  return `${(entry.at_ms / 1000).toFixed(3)} ${who} ${name} ${fields}`;
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
    if (d.event === 'committed' && !state.heights.has(d.height)) {
      state.heights.set(d.height, { round: d.round, hash: d.blockHash, atMs: entry.at_ms, txs: d.txs });
      // Remembered only to show each height once: forget those far below.
      for (const h of state.heights.keys()) {
        if (h + LOG_LINES_MAX < d.height) state.heights.delete(h); else break;
      }
      const item = document.createElement('li');
      item.value = d.height;
      item.textContent = `${d.blockHash.slice(0, 8)} round ${d.round}, ${d.txs} txs, at ${(entry.at_ms / 1000).toFixed(3)} s`;
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
  const height = leader.height + 1;
  const key = `${height}/${leader.round}`;
  $('quorum-title').textContent = `height ${height}, round ${leader.round} (as counted by n${leader.id})`;
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
      `replay: tinyweb sim ${state.sim.replayArgs()}`;
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
      } else if (node.up) state.sim.crash(target); else state.sim.restart(target);
    } else {
      // The arc from `from` clockwise to `target` becomes the other side.
      const n = state.nodes.length;
      const groups = new Array(n).fill(0);
      for (let i = from; ; i = (i + 1) % n) {
        groups[i] = 1;
        if (i === target) break;
      }
      state.sim.partition(JSON.stringify(groups));
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
  renderRing(nodes, JSON.parse(sim.inFlightJson()), now);
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
  $('heal').onclick = () => { state.sim?.heal(); render(); };
  $('speed').oninput = () => {
    $('speed-label').textContent = `${SPEEDS[$('speed').value]}×`;
    history.replaceState(null, '', shareUrl());
  };
  $('share').onclick = (e) => { e.preventDefault(); navigator.clipboard?.writeText(location.origin + shareUrl()); };
  document.addEventListener('pointerup', () => { state.drag = null; });
  document.addEventListener('keydown', (e) => {
    if (e.target.tagName === 'INPUT') return;
    if (e.key === ' ') { e.preventDefault(); setPlaying(!state.playing); }
    if (e.key === 's') $('step').click();
  });
  $('speed-label').textContent = `${SPEEDS[$('speed').value]}×`;
}

// ---- live mode ----

async function live(base) {
  $('mode').textContent = `live: ${base}`;
  $('controls').hidden = true;
  $('replay').textContent = '(a live cluster)';
  const poll = async () => {
    try {
      const s = await (await fetch(`${base}/status`)).json();
      const nodes = [{ id: s.id, up: true, height: s.height, round: s.round, step: s.step, group: 0, role: { role: 'honest' } }];
      for (const p of s.peers ?? []) {
        nodes.push({ id: p.id, up: !p.delinquent, height: '?', round: '?', step: p.delinquent ? 'delinquent' : 'peer', group: 0, role: { role: 'honest' } });
      }
      nodes.sort((a, b) => a.id - b.id);
      renderRing(nodes, [], 0);
      $('committed-height').textContent = String(s.height);
      $('phase').textContent = s.step;
    } catch (e) {
      notice(`cannot reach ${base}: ${e}`);
    }
  };
  await poll();
  setInterval(poll, 500);
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
  if (params.has('live')) {
    await live(params.get('live'));
    return;
  }
  const pkg = await import('./pkg/tinyweb_wasm.js');
  await pkg.default();
  WasmSim = pkg.WasmSim;
  window.tinyweb = { pkg, state, render }; // for tests and the curious
  newRun();
  setPlaying(params.get('autoplay') === '1');
  requestAnimationFrame(frame);
}

main().catch((e) => { $('violation').textContent = `failed to start: ${e}`; });
