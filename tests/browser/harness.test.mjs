// Self-checks of the browser tooling, no carillon needed: the bundles load in Chromium, and the
// fake microphone plays our WAV tone so that harness.audioSpectrum's analysis can tell tones apart.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import { cleanup, launchBrowser, makeTempDir, serveStatic, writeToneWav } from './lib.mjs';

describe('browser tooling', () => {
  let site;
  let dir;

  before(async () => {
    site = await serveStatic();
    dir = await makeTempDir();
  }, { timeout: 60_000 });

  after(async () => {
    await cleanup(); // the static server and any browser a failed case left open
    if (dir) await rm(dir, { recursive: true, force: true });
  }, { timeout: 60_000 });

  test('the demo and harness bundles load in Chromium without errors', { timeout: 60_000 }, async () => {
    const browser = await launchBrowser('tooling-bundles');
    try {
      await browser.page.goto(`${site.url}/harness.html`);
      await browser.page.waitForFunction(() => window.harness !== undefined, null, { timeout: 15_000 });
      assert.equal(await browser.page.textContent('#status'), 'ready');

      await browser.page.goto(`${site.url}/`);
      await browser.page.waitForFunction(() => window.demo !== undefined, null, { timeout: 15_000 });
      assert.equal(await browser.page.getAttribute('body', 'data-state'), 'idle');
      assert.equal(await browser.page.inputValue('#access-key-id'), 'AKIDCARILLONDEV');
      assert.match(await browser.page.inputValue('#user-name'), /^guest-\d{4}$/);

      assert.deepEqual(browser.pageErrors, []);
    } finally {
      await browser.close();
    }
  });

  test('the fake microphone plays the WAV tone through WebRTC (local loopback)', { timeout: 60_000 }, async () => {
    const browser = await launchBrowser('tooling-loopback', { wav: await writeToneWav(dir, 660) });
    try {
      await browser.page.goto(`${site.url}/harness.html`);
      await browser.page.waitForFunction(() => window.harness !== undefined, null, { timeout: 15_000 });
      const spectrum = await browser.page.evaluate(() => window.harness.loopbackSpectrum([440, 660, 880]));
      const message = JSON.stringify(spectrum);
      assert.ok(spectrum.levels[660].aboveFloorDb >= 30, `660 Hz should stand out: ${message}`);
      assert.ok(spectrum.levels[660].belowMaxDb <= 1, `660 Hz should be the loudest: ${message}`);
      assert.ok(spectrum.levels[440].belowMaxDb >= 40, `440 Hz should be absent: ${message}`);
      assert.ok(spectrum.levels[880].belowMaxDb >= 40, `880 Hz should be absent: ${message}`);
      assert.ok(Math.abs(spectrum.peaks[0].hz - 660) <= spectrum.binHz, message);
    } finally {
      await browser.close();
    }
  });
});
