// The demo page as a person uses it: Carillon serves web/dist at `/` (its working directory is
// the repository root), the page creates the meeting and the attendee through the AWS SDK for
// JavaScript against its own origin, and joins. Leaves artifacts/browser/demo.png.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { ARTIFACTS, REPO, cleanup, launchBrowser, startCarillon } from './lib.mjs';

describe('demo page', () => {
  let server;
  let browser;

  before(async () => {
    server = await startCarillon({ name: 'demo-server', cwd: REPO });
    browser = await launchBrowser('demo');
  }, { timeout: 60_000 });

  after(async () => {
    await cleanup(); // the browser and carillon
  }, { timeout: 60_000 });

  test('serves the page, joins a meeting, shows the camera and chats', { timeout: 60_000 }, async () => {
    const { page } = browser;
    try {
      const response = await page.goto(`${server.url}/`);
      assert.equal(response.status(), 200, `GET / should serve web/dist/index.html`);
      await page.waitForFunction(() => window.demo !== undefined, null, { timeout: 15_000 });

      await page.fill('#meeting-name', 'demo test');
      await page.fill('#user-name', 'Dana Demo');
      await page.click('#join');
      await page.waitForSelector('body[data-state="joined"]', { timeout: 15_000 });
      const self = await page.evaluate(() => window.demo.self);
      assert.equal(self.externalUserId, 'Dana Demo');
      await page.waitForFunction((id) => window.demo.roster.has(id), self.attendeeId, { timeout: 5_000 });

      await page.click('#camera');
      await page.waitForFunction(
        () => [...document.querySelectorAll('.tile video')].some((v) => v.videoWidth > 0),
        null,
        { timeout: 15_000 },
      );
      await page.fill('#chat-input', 'Hello from the demo test');
      await page.click('#chat-form button');
      await page.waitForSelector('#chat-log li', { timeout: 5_000 });
      assert.deepEqual(browser.pageErrors, []);
    } finally {
      await page.screenshot({ path: path.join(ARTIFACTS, 'demo.png') }).catch(() => {});
    }
  });
});
