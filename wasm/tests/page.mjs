// The visualizer end to end in headless Chromium (Debian's, never a downloaded one):
// the page loads and commits, a crash click brings a view change, the browser's trace
// hash equals native `tinyweb sim` for three seeds, and live mode, served by a real 4-node
// `tinyweb cluster` at /ui/, shows every node's height advancing. Screenshots go to
// target/visualizer-screenshots/.
//
// Usage: node wasm/tests/page.mjs   (after wasm/build.sh; TINYWEB_BIN names the native
// binary, default target/debug/tinyweb; CHROMIUM the browser, default /usr/bin/chromium)

import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { execFileSync, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', 'www');
const repo = resolve(here, '..', '..');
const tinyweb = process.env.TINYWEB_BIN ?? join(repo, 'target', 'debug', 'tinyweb');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
const DEADLINE_MS = 60_000;
const shots = join(repo, 'target', 'visualizer-screenshots');

function serve() {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(root, path.endsWith('/') ? `${path}index.html` : path);
    if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

function nativeTraceHash(seed, nodes, durationMs) {
  const out = execFileSync(tinyweb, ['sim', '--nodes', String(nodes), '--seeds', '1',
    '--seed-start', String(seed), '--duration-ms', String(durationMs), '--trace'],
  { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const line = out.trim().split('\n').find((l) => l.startsWith('trace hash '));
  assert.ok(line, 'tinyweb sim --trace prints its trace hash');
  return line.slice('trace hash '.length).trim();
}

// A 4-node `tinyweb cluster` serving this page; resolves once it prints the visualizer's URL.
async function startCluster(dir) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const basePort = 20000 + Math.floor(Math.random() * 9000);
    const child = spawn(tinyweb, ['cluster', '--nodes', '4', '--no-tui', '--load', '5',
      '--dir', join(dir, `c${attempt}`), '--base-port', String(basePort), '--ui-dir', root],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const url = await new Promise((ok) => {
      const timer = setTimeout(() => ok(null), DEADLINE_MS);
      const scan = (chunk) => {
        out += chunk;
        const m = out.match(/^visualizer \(live\): (\S+)$/m);
        if (m) { clearTimeout(timer); ok(m[1]); }
      };
      child.stdout.on('data', scan);
      child.stderr.on('data', (c) => { out += c; });
      child.on('exit', () => { clearTimeout(timer); ok(null); });
    });
    if (url) return { child, url };
    await stopCluster(child);
    if (!/in use|taken/.test(out)) throw new Error(`tinyweb cluster did not start:\n${out}`);
  }
  throw new Error('no free port range for the cluster after 3 tries');
}

// Ctrl-C: the cluster stops the nodes it started; SIGKILL if it has not exited in time.
async function stopCluster(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.on('exit', ok));
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

async function check(name, body) {
  const started = Date.now();
  await body();
  console.log(`ok: ${name} (${Date.now() - started} ms)`);
}

await mkdir(shots, { recursive: true });
const server = await serve();
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let failed = false;
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  await check('the page loads and a seed runs to a committed height', async () => {
    await page.goto(`${base}/?seed=1&nodes=4&autoplay=1&speed=2`);
    await page.waitForFunction(() => Number(document.getElementById('committed-height').textContent) >= 5,
      null, { timeout: DEADLINE_MS });
    assert.match(await page.textContent('#trace-hash'), /^[0-9a-f]{64}$/);
    assert.equal(await page.getAttribute('#invariants', 'class'), 'ok');
    assert.ok((await page.locator('#ring g.node').count()) === 4, 'four nodes drawn');
    await page.screenshot({ path: join(shots, 'sim-4-nodes.png') });
  });

  await check('crashing the proposer by a click brings a view change', async () => {
    await page.goto(`${base}/?seed=2&nodes=4&autoplay=0&speed=1`);
    await page.waitForFunction(() => window.tinyweb?.state?.sim, null, { timeout: DEADLINE_MS });
    // Run to the first commit, paused, then crash whoever proposes next.
    await page.evaluate(() => {
      const { state, render } = window.tinyweb;
      while (state.sim.committedHeight() < 1) state.sim.stepMany(1);
      render();
    });
    const proposer = await page.evaluate(() => window.tinyweb.state.nodes.find((n) => n.up && n.proposer != null).proposer);
    const node = page.locator(`#ring g.node[data-node="${proposer}"]`);
    const box = await node.boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.up();
    await page.waitForSelector(`#ring g.node.down[data-node="${proposer}"]`, { timeout: DEADLINE_MS });
    await page.click('#play');
    await page.waitForFunction(() => [...document.querySelectorAll('#log li')]
      .some((li) => / new_round_sent /.test(li.textContent)), null, { timeout: DEADLINE_MS });
    await page.waitForFunction(() => [...document.querySelectorAll('#log li')]
      .some((li) => / round_changed .*round=1/.test(li.textContent)), null, { timeout: DEADLINE_MS });
  });

  await check('a link at a step replays the clicks and opens at that exact step', async () => {
    // The page of the previous check: seed 2, the proposer crashed by a click, playing.
    await page.click('#play');
    const at = await page.evaluate(() => {
      const { state, render } = window.tinyweb;
      if (state.playing) throw new Error('still playing: the point would move');
      state.sim.stepMany(5);
      render();
      return { hash: state.sim.traceHash(), steps: state.sim.stepsTaken(), actions: state.actions.length };
    });
    assert.ok(at.actions >= 1, 'the crash click was recorded');
    await page.click('#copy-step');
    const link = page.url();
    assert.match(link, /[?&]faults=c\d+%3A\d+%3A\d+/);
    assert.match(link, /[?&]at=\d+%3A\d+/);
    const other = await browser.newPage();
    await other.goto(link);
    await other.waitForFunction(() => window.tinyweb?.state?.sim, null, { timeout: DEADLINE_MS });
    const replayed = await other.evaluate(() => ({
      hash: window.tinyweb.state.sim.traceHash(),
      steps: window.tinyweb.state.sim.stepsTaken(),
      playing: window.tinyweb.state.playing,
    }));
    assert.deepEqual(replayed, { hash: at.hash, steps: at.steps, playing: false });
    await other.close();
  });

  await check('messages and signatures are counted per round and drawn in the time-space diagram', async () => {
    await page.goto(`${base}/?seed=5&nodes=4&autoplay=0`);
    await page.waitForFunction(() => window.tinyweb?.state?.sim, null, { timeout: DEADLINE_MS });
    const counts = await page.evaluate(() => {
      const { state, render } = window.tinyweb;
      state.sim.runUntil(state.sim.nowMs() + 600);
      state.panelsAt = -Infinity; // draw the throttled panels now
      render();
      return [...state.rounds.values()].map((r) => ({ votes: r.kinds.verification_vote ?? 0, messages: r.messages, signed: r.signed.size }));
    });
    assert.ok(counts.length > 0, 'a round was counted');
    // Four nodes: each vote is signed once and sent to the three others.
    const full = counts.find((c) => c.votes === 12);
    assert.ok(full, `a round with every verification vote sent: ${JSON.stringify(counts)}`);
    assert.ok(full.signed > 0 && full.messages > full.signed, JSON.stringify(full));
    assert.ok((await page.locator('#round-counts tr').count()) >= 2, 'a row under the header');
    // A row picks its round for the quorum matrix.
    const picked = page.locator('#round-counts tr[title]').last();
    const key = await picked.locator('td').first().textContent();
    await picked.click();
    const [h, r] = key.split('/');
    assert.match(await page.textContent('#quorum-title'), new RegExp(`height ${h}, round ${r} \\(picked`));
    assert.ok((await page.locator('#quorum td.yes').count()) > 0, 'the picked round shows votes');
    assert.ok((await page.locator('#lamport line.msg').count()) > 0, 'messages drawn');
    assert.ok((await page.locator('#lamport circle.commit').count()) > 0, 'commits drawn');
  });

  await check('making nodes Byzantine mid-run: one is tolerated, a second breaks agreement and is caught', async () => {
    await page.goto(`${base}/?seed=0&nodes=4&autoplay=0`);
    await page.waitForFunction(() => window.tinyweb?.state?.sim, null, { timeout: DEADLINE_MS });
    await page.evaluate(() => { window.tinyweb.state.sim.runUntil(1000); window.tinyweb.render(); });
    await page.selectOption('#strategy', 'equivocate');
    await page.click('#make-byzantine');
    await page.waitForSelector('#ring g.node.byzantine[data-node="3"]', { timeout: DEADLINE_MS });
    const safeUntil = await page.evaluate(() => {
      const { state, render } = window.tinyweb;
      const h = state.sim.committedHeight();
      state.sim.runUntil(state.sim.nowMs() + 4000);
      render();
      return { before: h, after: state.sim.committedHeight(), violations: JSON.parse(state.sim.violationsJson()).length };
    });
    assert.ok(safeUntil.after > safeUntil.before, `one traitor of four: still committing ${JSON.stringify(safeUntil)}`);
    assert.equal(safeUntil.violations, 0);
    await page.click('#make-byzantine');
    await page.waitForSelector('#ring g.node.byzantine[data-node="2"]', { timeout: DEADLINE_MS });
    await page.click('#play');
    await page.evaluate(() => { window.tinyweb.state.sim.runUntil(window.tinyweb.state.sim.nowMs() + 60000); window.tinyweb.render(); });
    await page.waitForSelector('#invariants.bad', { timeout: DEADLINE_MS });
    assert.match(page.url(), /[?&]faults=bequivocate%3A\d+%3A\d+%2Cbequivocate/);
    assert.match(await page.textContent('#violation'), /this link replays them: http\S*faults=/);
    await page.screenshot({ path: join(shots, 'sim-turned-byzantine.png') });
  });

  await check('two equivocators among four fork the chain and the agreement invariant turns red', async () => {
    // Beyond f = 1: the checker must catch the fork (seed 0 forks within seconds natively).
    await page.goto(`${base}/?seed=0&nodes=4&byzantine=2&strategy=equivocate&autoplay=1&speed=2`);
    await page.waitForSelector('#invariants.bad #inv-agreement.bad', { timeout: DEADLINE_MS });
    assert.match(await page.textContent('#violation'), /seed 0: .*agreement[\s\S]*tinyweb sim .*--byzantine 2 --strategy equivocate/);
    assert.equal(await page.getAttribute('#inv-validity', 'class'), '');
  });

  await check('the browser and native trace hashes agree for three seeds', async () => {
    for (const seed of [11, 12, 13]) {
      const config = { nodes: 4, seed, duration_ms: 4000 };
      const inBrowser = await page.evaluate((c) => window.tinyweb.pkg.traceHashOfRun(JSON.stringify(c)), config);
      const native = nativeTraceHash(seed, 4, 4000);
      assert.equal(inBrowser, native, `seed ${seed}`);
      console.log(`  seed ${seed}: ${native}`);
    }
  });

  await check('live mode, served by a real 4-node cluster, shows every node advancing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tinyweb-live-'));
    const { child, url } = await startCluster(dir);
    try {
      await page.goto(url);
      const heights = () => page.evaluate(() => (window.tinyweb?.state?.nodes ?? []).map((n) => n.height));
      // Every node answers, then every node's height moves past where it was.
      await page.waitForFunction(() => {
        const nodes = window.tinyweb?.state?.nodes ?? [];
        return nodes.length === 4 && nodes.every((n) => n.up && Number.isInteger(n.height));
      }, null, { timeout: DEADLINE_MS });
      const before = await heights();
      await page.waitForFunction((b) => {
        const nodes = window.tinyweb.state.nodes;
        return nodes.length === 4 && nodes.every((n, i) => n.up && n.height >= b[i] + 2);
      }, before, { timeout: DEADLINE_MS });
      const committed = Number(await page.textContent('#committed-height'));
      assert.ok(committed >= Math.min(...before) + 2, `committed-height ${committed} after ${before}`);
      assert.equal(await page.locator('#ring g.node.up').count(), 4, 'four nodes drawn up');
      await page.waitForFunction(() => [...document.querySelectorAll('#log li')]
        .some((li) => / committed /.test(li.textContent)), null, { timeout: DEADLINE_MS });
      await page.screenshot({ path: join(shots, 'live-4-nodes.png') });
      console.log(`  heights ${before} -> ${await heights()}`);
    } finally {
      await stopCluster(child);
      await rm(dir, { recursive: true, force: true });
    }
  });

  assert.deepEqual(errors, [], 'no page errors');
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
