// Drives the demo page in headless Chromium (playwright-core, Debian's /usr/bin/chromium)
// the way a user does: open a photo with the file picker, click every concept, check the
// golden vectors, film the (fake) webcam, take a screenshot. Writes what the page produced
// for tests/test_web_demo.py to compare with the Python runtime.
//
//   node test/drive.mjs --url http://127.0.0.1:PORT/ --photo photo.png --out DIR
//       [--screenshot FILE] [--screenshot-concept NAME] [--webcam] [--chromium /usr/bin/chromium]
//
// DIR/results.json: concepts, backend, per-concept timings, golden results, the strength
// slider at 0.5 (DIR/strength-0.5.rgb), webcam frames, console errors. DIR/<concept>.rgb and DIR/golden-<concept>.rgb: packed RGB of each output.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    photo: { type: 'string' },
    out: { type: 'string' },
    screenshot: { type: 'string' },
    'screenshot-concept': { type: 'string' },
    webcam: { type: 'boolean', default: false },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    timeout: { type: 'string', default: '60000' },
  },
});
for (const required of ['url', 'photo', 'out']) {
  if (!args[required]) throw new Error(`--${required} is required`);
}
mkdirSync(args.out, { recursive: true });
const timeout = Number(args.timeout);

const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
if (args.webcam) flags.push('--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream');
const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: flags, timeout });
const results = { console: [], errors: [] };
const started = Date.now();
const mark = (what) => { results.steps = results.steps || {}; results.steps[what] = Date.now() - started; };

try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 860 }, deviceScaleFactor: 1 });
  if (args.webcam) await context.grantPermissions(['camera']);
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') results.console.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => results.errors.push(String(e)));

  await page.goto(args.url);
  await page.evaluate(() => window.pocketganDemo.ready.then(() => true));
  mark('ready');
  Object.assign(results, await page.evaluate(() => {
    const d = window.pocketganDemo;
    return {
      backend: d.state.backend,
      concepts: d.runtime.concepts,
      buttons: [...document.querySelectorAll('.concept')].map((b) => b.dataset.concept),
      status: document.getElementById('status').textContent,
      crossOriginIsolated: self.crossOriginIsolated,
      inputName: d.runtime.inputName,
      outputName: d.runtime.outputName,
    };
  }));

  // pixels of the latest edit as base64 packed RGB
  const lastOutput = () => page.evaluate(() => {
    const r = window.pocketganDemo.state.lastResult;
    const { width, height, data } = r.image;
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; j < data.length; i += 3, j += 4) { rgb[i] = data[j]; rgb[i + 1] = data[j + 1]; rgb[i + 2] = data[j + 2]; }
    let s = '';
    for (let i = 0; i < rgb.length; i += 0x8000) s += String.fromCharCode(...rgb.subarray(i, i + 0x8000));
    return { width, height, concept: r.concept, timings: r.timings, rgb: btoa(s) };
  });
  const edits = () => page.evaluate(() => window.pocketganDemo.state.edits);
  // does what a user does and waits for the page's edits it starts (`count` of them; the
  // last one of `concept` when given)
  const andWaitForEdit = async (action, { count = 1, concept = null } = {}) => {
    const before = await edits();
    await action();
    await page.waitForFunction(([n, k, c]) => {
      const s = window.pocketganDemo.state;
      return s.edits >= n + k && (c === null || s.lastResult.concept === c);
    }, [before, count, concept]);
  };
  const clickConcept = (concept) =>
    andWaitForEdit(() => page.click(`.concept[data-concept="${concept}"]`), { concept });

  // a user opens a photo with the file picker
  await andWaitForEdit(() => page.setInputFiles('#file', args.photo));
  mark('photo');

  // ... and clicks every concept
  results.edits = {};
  for (const concept of results.buttons) {
    await clickConcept(concept);
    const out = await lastOutput();
    writeFileSync(join(args.out, `${concept}.rgb`), Buffer.from(out.rgb, 'base64'));
    results.edits[concept] = { width: out.width, height: out.height, timings: out.timings,
      pressed: await page.getAttribute(`.concept[data-concept="${concept}"]`, 'aria-pressed') };
  }
  mark('concepts');

  // the strength slider (bundles with a neutral concept): a user drags it to 0.5
  if (await page.isVisible('#strength')) {
    const concept = results.buttons[0];
    await clickConcept(concept);
    await andWaitForEdit(() => page.$eval('#strength', (el) => {
      el.value = '0.5';
      el.dispatchEvent(new Event('input', { bubbles: true }));
    }));
    const out = await lastOutput();
    writeFileSync(join(args.out, 'strength-0.5.rgb'), Buffer.from(out.rgb, 'base64'));
    results.strength = { concept, label: out.concept, width: out.width, height: out.height,
      shown: await page.textContent('#strength-value') };
    await andWaitForEdit(() => page.$eval('#strength', (el) => {
      el.value = '1';
      el.dispatchEvent(new Event('input', { bubbles: true }));
    }));
  } else {
    results.strength = null;
  }
  mark('strength');

  // golden vectors, through the page's button
  if (await page.isVisible('#check-golden')) {
    await page.click('#check-golden');
    await page.waitForSelector('#golden table');
    const golden = await page.evaluate(async () => {
      const rows = await window.pocketganDemo.runtime.checkGolden();
      return rows.map((r) => {
        const { width, height, data } = r.image;
        let s = '';
        for (let j = 0; j < data.length; j += 4) s += String.fromCharCode(data[j], data[j + 1], data[j + 2]);
        return { concept: r.concept, psnr: Number.isFinite(r.psnr) ? r.psnr : 999, passed: r.passed,
          thresholdDb: r.thresholdDb, width, height, rgb: btoa(s) };
      });
    });
    for (const g of golden) {
      writeFileSync(join(args.out, `golden-${g.concept}.rgb`), Buffer.from(g.rgb, 'base64'));
      delete g.rgb;
    }
    results.golden = golden;
    results.goldenTableRows = await page.$$eval('#golden tr', (rows) => rows.length - 1);
  } else {
    results.golden = null;
  }
  mark('golden');

  // the sample photo (the bundle's golden input) and a photo dropped on the page
  if (await page.isVisible('#sample')) {
    await andWaitForEdit(() => page.click('#sample'));
    results.sample = await page.textContent('#before-caption');
  }
  const dataTransfer = await page.evaluateHandle((b64) => {
    const dt = new DataTransfer();
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
    return dt;
  }, readFileSync(args.photo).toString('base64'));
  await andWaitForEdit(() => page.dispatchEvent('#before-panel', 'drop', { dataTransfer }));
  results.dropped = await page.textContent('#before-caption');
  mark('sample+drop');

  // the fake webcam: a few live frames
  if (args.webcam) {
    await andWaitForEdit(() => page.click('#webcam'), { count: 3 });
    results.webcam = await page.evaluate(() => ({
      frames: window.pocketganDemo.state.edits,
      timing: document.getElementById('timing').textContent,
      caption: document.getElementById('before-caption').textContent,
    }));
    await page.click('#webcam');
    // back to the photo for the screenshot
    await andWaitForEdit(() => page.setInputFiles('#file', args.photo));
    mark('webcam');
  }

  // the screenshot: the photo edited with a concept picked in the page
  if (args.screenshot) {
    const concept = args['screenshot-concept'] || results.buttons[results.buttons.length - 1];
    await clickConcept(concept);
    await page.screenshot({ path: args.screenshot, fullPage: true });
    results.screenshot = { path: args.screenshot, concept, timing: await page.textContent('#timing') };
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
