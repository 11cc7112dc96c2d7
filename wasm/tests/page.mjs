// The visualizer end to end in headless Chromium (Debian's, never a downloaded one):
// the page loads and commits, a crash click brings a view change, and the browser's trace
// hash equals native `tinyweb sim` for three seeds.
//
// Usage: node wasm/tests/page.mjs   (after wasm/build.sh; TINYWEB_BIN names the native
// binary, default target/debug/tinyweb; CHROMIUM the browser, default /usr/bin/chromium)

import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { extname, join, normalize, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', 'www');
const repo = resolve(here, '..', '..');
const tinyweb = process.env.TINYWEB_BIN ?? join(repo, 'target', 'debug', 'tinyweb');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
const DEADLINE_MS = 60_000;

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

async function check(name, body) {
  const started = Date.now();
  await body();
  console.log(`ok: ${name} (${Date.now() - started} ms)`);
}

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

  assert.deepEqual(errors, [], 'no page errors');
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
