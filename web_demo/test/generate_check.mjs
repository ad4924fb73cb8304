// The Generate tab's checks for tests/test_web_generate.py, in three modes:
//
//   node test/generate_check.mjs lib DIR
//       lib/generation.js in Node on DIR/cases.json ({buckets: [...], tokens, count, prompts:
//       [...], seeds: ["decimal", ...]}): writes DIR/hashing.json ({words, ids per bucket
//       count} per prompt), DIR/noise-<i>.f32 (float32 little-endian, `count` values per seed)
//       and DIR/splitmix64.json (the first outputs per seed), for a comparison with the Python
//       runtime; prints the errors of bad seeds and prompts.
//   node test/generate_check.mjs errors BUNDLE
//       openGenerationBundle on a generation bundle served by a fetch that can change what it
//       serves, with a stand-in for onnxruntime-web: prints JSON {case: outcome} (typed errors).
//   node test/generate_check.mjs page --url URL --cases JSON --out DIR [--screenshot FILE]
//       [--missing-url URL] [--bad-url URL] [--chromium /usr/bin/chromium]
//       drives the page in headless Chromium (playwright-core) as a user: opens the Generate
//       tab, types each case's prompt and seed, clicks Generate, reads the canvas back
//       (DIR/gen-<i>.rgb, packed RGB at the bundle's size), checks the golden cases with the
//       page's button, types a bad seed; then opens --missing-url and --bad-url and reads the
//       message the page shows. DIR/results.json has what it saw.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const mode = process.argv[2];

// --- lib: hashing and noise ----------------------------------------------------------------

async function libMode(dir) {
  const { promptIds, promptWords, parseSeed, seededNoise, splitmix64 } = await import('../lib/generation.js');
  const cases = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8'));
  const hashing = cases.prompts.map((p) => ({ words: promptWords(p), ids: cases.buckets.map((b) => promptIds(p, b, cases.tokens)) }));
  writeFileSync(join(dir, 'hashing.json'), JSON.stringify(hashing));
  const streams = {};
  const times = [];
  cases.seeds.forEach((seed, i) => {
    streams[seed] = [...splitmix64(seed, 4)].map(String);
    const t0 = performance.now();
    const noise = seededNoise(seed, cases.count); // seeds as decimal strings: 2^64 - 1 is not a JS number
    times.push(performance.now() - t0);
    writeFileSync(join(dir, `noise-${i}.f32`), Buffer.from(noise.buffer));
  });
  writeFileSync(join(dir, 'splitmix64.json'), JSON.stringify(streams));
  const outcome = (f) => { try { return String(f()); } catch (e) { return e.name; } };
  const badSeeds = { '-1n': -1n, '2^64 (bigint)': 1n << 64n, '2^64 (string)': '18446744073709551616', abc: 'abc', '1.5': 1.5,
    '2^60 (number)': 2 ** 60, empty: '', '-3 (string)': '-3' };
  const seeds = Object.fromEntries(Object.entries(badSeeds).map(([k, v]) => [k, outcome(() => parseSeed(v))]));
  seeds['2^53 - 1 (number)'] = outcome(() => parseSeed(2 ** 53 - 1));
  seeds[' 42 (string)'] = outcome(() => parseSeed(' 42 '));
  const prompts = {
    '4097 letters': outcome(() => promptWords('a'.repeat(4097)).length),
    '4096 emoji (8192 UTF-16 units)': outcome(() => promptWords('\u{1F600}'.repeat(4096)).length),
    'a number': outcome(() => promptWords(3)),
  };
  console.log(JSON.stringify({ prompts: cases.prompts.length, seeds: cases.seeds.length, noiseMs: times, seedOutcomes: seeds, promptOutcomes: prompts }));
}

// --- errors: bad bundles in Node ------------------------------------------------------------

async function errorsMode(bundle) {
  const { openGenerationBundle } = await import('../lib/generation.js');
  const pristineText = readFileSync(join(bundle, 'manifest.json'), 'utf8');
  const pristine = JSON.parse(pristineText);
  const clone = () => JSON.parse(pristineText);
  const fetcher = ({ manifest = pristine, corrupt = {}, missing = false } = {}) => async (url) => {
    const rel = decodeURIComponent(new URL(url).pathname.replace(/^\/generation\//, ''));
    if (missing) return new Response('not found', { status: 404 });
    if (rel === 'manifest.json') return new Response(typeof manifest === 'string' ? manifest : JSON.stringify(manifest));
    let bytes;
    try {
      bytes = new Uint8Array(readFileSync(join(bundle, rel)));
    } catch {
      return new Response('not found', { status: 404 });
    }
    return new Response(corrupt[rel] ? corrupt[rel](bytes) : bytes);
  };
  // onnxruntime-web's surface openGenerationBundle uses: a session that declares the manifest's io
  const fakeOrt = ({ inputNames } = {}) => ({
    Tensor: class {},
    InferenceSession: {
      async create() {
        const io = pristine.io;
        return { inputNames: inputNames || io.inputs.map((t) => t.name), outputNames: [io.output.name], async release() {} };
      },
    },
  });
  const m = pristine;
  const edit = (f) => { const c = clone(); f(c); return c; };
  const cases = {
    ok: {},
    missing: { missing: true },
    not_json: { manifest: pristineText.slice(0, -10) },
    editing_bundle: { manifest: edit((c) => { delete c.kind; }) },
    newer_format: { manifest: edit((c) => { c.format_version = 2; }) },
    other_hash: { manifest: edit((c) => { c.prompts.hash = 'md5'; }) },
    other_noise: { manifest: edit((c) => { c.noise.algorithm = 'mt19937'; }) },
    wrong_shape: { manifest: edit((c) => { c.io.inputs[1].shape = [1, c.prompts.tokens + 1, c.prompts.width]; }) },
    same_names: { manifest: edit((c) => { c.io.output.name = c.io.inputs[0].name; }) },
    no_onnx: { manifest: edit((c) => { c.targets = {}; }) },
    unlisted_table: { manifest: edit((c) => { delete c.artifacts[c.prompts.table]; }) },
    flipped_model: { corrupt: { [m.targets.onnx.model]: (b) => { b[b.length >> 1] ^= 0xff; return b; } } },
    flipped_table: { corrupt: { [m.prompts.table]: (b) => { b[b.length - 1] ^= 0xff; return b; } } },
    other_inputs: { ort: { inputNames: ['latents', m.io.inputs[1].name] } },
  };
  const out = {};
  for (const [name, c] of Object.entries(cases)) {
    try {
      const rt = await openGenerationBundle('http://demo.test/generation/', { ort: fakeOrt(c.ort), fetch: fetcher(c) });
      out[name] = { ok: true, size: rt.size, tokens: rt.tokens };
    } catch (e) {
      out[name] = { ok: false, error: e.name, message: e.message };
    }
  }
  console.log(JSON.stringify(out));
}

// --- page: the Generate tab in Chromium -------------------------------------------------------

async function pageMode(argv) {
  const { chromium } = await import('playwright-core');
  const { values: args } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      cases: { type: 'string' },
      out: { type: 'string' },
      screenshot: { type: 'string' },
      'missing-url': { type: 'string' },
      'bad-url': { type: 'string' },
      chromium: { type: 'string', default: '/usr/bin/chromium' },
      timeout: { type: 'string', default: '60000' },
    },
  });
  for (const required of ['url', 'cases', 'out']) {
    if (!args[required]) throw new Error(`--${required} is required`);
  }
  mkdirSync(args.out, { recursive: true });
  const timeout = Number(args.timeout);
  const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
  const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: flags, timeout });
  const results = { console: [], errors: [] };
  const started = Date.now();
  const mark = (what) => { results.steps = results.steps || {}; results.steps[what] = Date.now() - started; };
  try {
    const context = await browser.newContext({ viewport: { width: 1200, height: 860 }, deviceScaleFactor: 1 });
    const open = async (url, log) => {
      const page = await context.newPage();
      page.setDefaultTimeout(timeout);
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') log.push(`${m.type()}: ${m.text()}`); });
      page.on('pageerror', (e) => results.errors.push(String(e)));
      await page.goto(url);
      return page;
    };

    // both tabs' bundles opened or failed (a page closed while it still loads makes the server log broken pipes)
    const settled = (p) => p.evaluate(() => Promise.allSettled([window.pocketganDemo.ready, window.pocketganDemo.generation.ready]));

    // a user opens the page and clicks the Generate tab
    const page = await open(args.url, results.console);
    const visible = () => page.evaluate(() => ({
      edit: !document.getElementById('edit-tab').hidden, generate: !document.getElementById('generate-tab').hidden }));
    results.tabsBefore = await visible();
    await page.click('#tab-generate');
    await page.waitForFunction(() => !document.getElementById('generate-tab').hidden);
    results.tabsAfter = await visible();
    await page.evaluate(() => window.pocketganDemo.generation.ready.then(() => true));
    mark('ready');
    Object.assign(results, await page.evaluate(() => {
      const g = window.pocketganDemo.generation.runtime;
      return { status: document.getElementById('gen-status').textContent, backend: window.pocketganDemo.state.backend,
        crossOriginIsolated: self.crossOriginIsolated, size: g.size, names: [g.noiseName, g.statesName, g.outputName],
        prefilled: [document.getElementById('gen-prompt').value, document.getElementById('gen-seed').value] };
    }));

    // ... types each prompt and seed, clicks Generate, and the canvas is read back
    const generations = () => page.evaluate(() => window.pocketganDemo.generation.state.generations);
    const statusText = () => page.textContent('#gen-status');
    results.generated = [];
    const cases = JSON.parse(args.cases);
    for (const [i, c] of cases.entries()) {
      const before = await generations();
      await page.fill('#gen-prompt', c.prompt);
      await page.fill('#gen-seed', c.seed);
      await page.click('#gen-run');
      await page.waitForFunction((n) => window.pocketganDemo.generation.state.generations > n, before);
      const shown = await page.evaluate(() => {
        const canvas = document.getElementById('gen-canvas');
        const { width, height } = canvas;
        // read a copy: the page's own context is not made for readbacks (Chromium warns on several)
        const copy = new OffscreenCanvas(width, height).getContext('2d', { willReadFrequently: true });
        copy.drawImage(canvas, 0, 0);
        const data = copy.getImageData(0, 0, width, height).data;
        let s = '';
        for (let j = 0; j < data.length; j += 4) s += String.fromCharCode(data[j], data[j + 1], data[j + 2]);
        const r = window.pocketganDemo.generation.state.lastResult;
        return { width, height, rgb: btoa(s), cssWidth: canvas.getBoundingClientRect().width, seed: String(r.seed),
          timings: r.timings, caption: document.getElementById('gen-caption').textContent,
          timing: document.getElementById('gen-timing').textContent };
      });
      writeFileSync(join(args.out, `gen-${i}.rgb`), Buffer.from(shown.rgb, 'base64'));
      delete shown.rgb;
      results.generated.push(shown);
    }
    mark('generated');

    // the golden cases, through the page's button
    await page.click('#gen-check-golden');
    await page.waitForSelector('#gen-golden table');
    results.golden = await page.evaluate(() => window.pocketganDemo.generation.state.golden.map(({ image, ...r }) => ({
      ...r, psnr: Number.isFinite(r.psnr) ? r.psnr : 999 })));
    results.goldenTableRows = await page.$$eval('#gen-golden tr', (rows) => rows.length - 1);
    mark('golden');

    if (args.screenshot) {
      // the last case again, so the picture and its timing are on screen with the golden table
      const before = await generations();
      await page.click('#gen-run');
      await page.waitForFunction((n) => window.pocketganDemo.generation.state.generations > n, before);
      await page.screenshot({ path: args.screenshot, fullPage: true });
    }

    // a seed that is no seed: a message, no picture, and the next good one works again
    const before = await generations();
    await page.fill('#gen-seed', '18446744073709551616');
    await page.click('#gen-run');
    await page.waitForFunction(() => document.getElementById('gen-status').classList.contains('error'));
    results.badSeed = { status: await statusText(), generations: (await generations()) - before };
    await page.fill('#gen-seed', '1');
    await page.click('#gen-run');
    await page.waitForFunction((n) => window.pocketganDemo.generation.state.generations > n, before);
    results.afterBadSeed = { status: await statusText(), error: await page.$eval('#gen-status', (el) => el.classList.contains('error')) };
    await settled(page);
    mark('bad seed');

    // pages whose generation bundle is missing or is no generation bundle: the message shown
    for (const [key, url] of [['missing', args['missing-url']], ['bad', args['bad-url']]]) {
      if (!url) continue;
      const log = [];
      const other = await open(url, log);
      await settled(other);
      results[key] = await other.evaluate(() => {
        const el = document.getElementById('gen-status');
        return { status: el.textContent, error: el.classList.contains('error'), visible: !document.getElementById('generate-tab').hidden,
          runDisabled: document.getElementById('gen-run').disabled };
      });
      results[key].console = log;
      await other.close();
    }
    mark('done');
  } catch (e) {
    results.failure = String(e && e.stack ? e.stack : e);
  } finally {
    await browser.close();
    writeFileSync(join(args.out, 'results.json'), JSON.stringify(results, null, 2));
  }
  if (results.failure) {
    console.error(results.failure);
    process.exit(1);
  }
  console.log(JSON.stringify({ ok: true, steps: results.steps }));
}

if (mode === 'lib') await libMode(process.argv[3]);
else if (mode === 'errors') await errorsMode(process.argv[3]);
else if (mode === 'page') await pageMode(process.argv.slice(3));
else {
  console.error('usage: node test/generate_check.mjs lib DIR | errors BUNDLE | page --url URL --cases JSON --out DIR ...');
  process.exit(2);
}
