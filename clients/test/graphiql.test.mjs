// The GraphiQL playground on `/` in headless Chromium (Debian's, driven by
// playwright-core): everything it loads comes from ordercast itself, a query
// runs over HTTP with the headers editor's Authorization, a subscription runs
// over WebSocket with the same token in connection_init, and a `#token=` link
// (as `make run` prints) opens it signed in.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { addItem, baseUrl, createOrder, email, firstProductId, token } from '../lib/ordercast.mjs';

const executablePath = process.env.ORDERCAST_CHROMIUM || '/usr/bin/chromium';
const artifacts = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'target', 'artifacts');
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

let userDataDir;
let context;
let page;
/** Every request the page made (URL), and those to another host (aborted). */
const requests = [];
const external = [];
const websockets = [];
const problems = [];

before(async () => {
  userDataDir = mkdtempSync(join(tmpdir(), 'ordercast-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1440, height: 900 },
  });
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    requests.push(url.href);
    if (LOCAL_HOSTS.has(url.hostname)) return route.continue();
    external.push(url.href);
    return route.abort('blockedbyclient');
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // A blocked external request or a CSP violation shows up here.
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('websocket', (socket) => {
    const frames = { url: socket.url(), sent: [], received: [] };
    websockets.push(frames);
    socket.on('framesent', (frame) => frames.sent.push(String(frame.payload)));
    socket.on('framereceived', (frame) => frames.received.push(String(frame.payload)));
  });
});

after(async () => {
  await context?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

/** The text of a GraphiQL (CodeMirror 5) editor. */
function editorText(selector) {
  return page.$eval(`${selector} .CodeMirror`, (element) => element.CodeMirror.getValue());
}

/** Replaces an editor's text the way a user pastes: click, select all, insert. */
async function replaceEditorText(selector, text) {
  await page.click(`${selector} .CodeMirror-scroll`);
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
  assert.equal(await editorText(selector), text);
}

const QUERY_EDITOR = '.graphiql-query-editor';
const HEADERS_EDITOR = '.graphiql-editor-tool .graphiql-editor:not(.hidden)';
const RESULT = '.graphiql-response';

/** Replaces the query; GraphiQL picks up the new operation name (tab title) after a debounce. */
async function setOperation(text, name) {
  await replaceEditorText(QUERY_EDITOR, text);
  await page.waitForFunction(
    (name) => document.querySelector('.graphiql-tab-active .graphiql-tab-button')?.textContent.trim() === name,
    name,
    { timeout: 5000, polling: 50 },
  );
}

async function resultContains(fragment, timeout = 20000) {
  await page.waitForFunction(
    ({ selector, fragment }) => document.querySelector(selector)?.CodeMirror?.getValue().includes(fragment),
    { selector: `${RESULT} .CodeMirror`, fragment },
    { timeout, polling: 100 },
  );
}

test('GraphiQL renders from ordercast alone, with the example operation and header guidance', { timeout: 60000 }, async () => {
  const response = await page.goto(`${baseUrl}/`, { waitUntil: 'load' });
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-type'], /^text\/html/);
  await page.waitForSelector(`${QUERY_EDITOR} .CodeMirror`, { timeout: 30000 });
  await page.waitForSelector('.graphiql-execute-button');

  const query = await editorText(QUERY_EDITOR);
  assert.match(query, /\bme\s*\{/, 'the default tab queries me');
  assert.match(query, /\bproducts\s*\(/, 'the default tab queries products');
  assert.match(query, /^# mutation /m, 'a commented mutation example');
  assert.match(query, /^# subscription /m, 'a commented subscription example');
  await page.waitForSelector(HEADERS_EDITOR);
  assert.match(await editorText(HEADERS_EDITOR), /"Authorization": "Bearer <paste a token/);

  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, 'graphiql-start.png') });

  const local = requests.filter((url) => LOCAL_HOSTS.has(new URL(url).hostname));
  assert.ok(local.some((url) => url.includes('/playground/graphiql.js')), 'the script came from ordercast');
  assert.ok(local.some((url) => url.includes('/playground/graphiql.css')), 'the styles came from ordercast');
});

test('a query runs over HTTP with the Authorization of the headers editor', { timeout: 60000 }, async () => {
  await replaceEditorText(HEADERS_EDITOR, JSON.stringify({ Authorization: `Bearer ${token}` }, null, 2));
  await setOperation('query WhoAmI { me { email } }', 'WhoAmI');
  await page.click('.graphiql-execute-button');
  await resultContains(`"email": "${email}"`);
});

test('a subscription runs over WebSocket and shows changes made over HTTP', { timeout: 90000 }, async () => {
  const productId = await firstProductId();
  const order = await createOrder();
  await setOperation(
    `subscription OrderUpdates {\n  orderUpdates(orderId: "${order.id}") {\n    version\n    change\n    order { status totalCents items { quantity product { name } } }\n  }\n}`,
    'OrderUpdates',
  );
  await page.click('.graphiql-execute-button');
  await resultContains('"change": "SNAPSHOT"');

  const added = await addItem(order.id, productId, 2);
  assert.equal(added.version, 2);
  await resultContains('"change": "ITEM_ADDED"');
  await resultContains('"version": 2');

  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, 'graphiql.png') });

  // The socket went to ordercast, and authenticated the way the docs say.
  assert.equal(websockets.length, 1, `one WebSocket: ${websockets.map((ws) => ws.url)}`);
  assert.equal(new URL(websockets[0].url).host, new URL(baseUrl).host);
  const init = JSON.parse(websockets[0].sent[0]);
  assert.equal(init.type, 'connection_init');
  assert.deepEqual(init.payload, { authorization: `Bearer ${token}` });

  await page.click('.graphiql-execute-button'); // stop
});

test('GraphiQL loads the schema (docs and autocompletion need introspection)', { timeout: 30000 }, async () => {
  await page.click('button[aria-label="Show Documentation Explorer"]');
  const docs = page.locator('.graphiql-doc-explorer');
  await docs.waitFor({ timeout: 10000 });
  await page
    .waitForFunction(() => /Root Types/.test(document.querySelector('.graphiql-doc-explorer')?.textContent ?? ''), null, {
      timeout: 10000,
    })
    .catch(async () => {
      const text = (await docs.textContent()) ?? '';
      assert.fail(`the documentation explorer shows no schema: ${text.slice(0, 300)}`);
    });
  await page.click('button[aria-label="Hide Documentation Explorer"]');
});

test('a #token= link opens GraphiQL signed in, over persisted headers, and the address bar drops the token', { timeout: 60000 }, async () => {
  // An earlier session persisted headers whose token has since expired.
  await page.evaluate(() => {
    localStorage.setItem('graphiql:shouldPersistHeaders', 'true');
    localStorage.setItem('graphiql:headers', JSON.stringify({ Authorization: 'Bearer expired' }));
  });
  await page.goto('about:blank'); // so the link is a new load, not a same-document navigation
  const response = await page.goto(`${baseUrl}/#token=${token}`, { waitUntil: 'load' });
  assert.equal(response.status(), 200);
  await page.waitForSelector(`${QUERY_EDITOR} .CodeMirror`, { timeout: 30000 });
  assert.equal(page.url(), `${baseUrl}/`);
  assert.equal(await page.evaluate(() => window.location.href), `${baseUrl}/`);

  await setOperation('{ me { email } }', '<untitled>');
  await page.click('.graphiql-execute-button');
  await resultContains(`"email": "${email}"`);
  assert.deepEqual(JSON.parse(await editorText(HEADERS_EDITOR)), { Authorization: `Bearer ${token}` });
});

test('a #token= link pasted into an open GraphiQL signs it in too', { timeout: 60000 }, async () => {
  await replaceEditorText(HEADERS_EDITOR, '{}');
  // Only the fragment differs from the open page: no new load by itself.
  await page.goto(`${baseUrl}/#token=${token}`);
  await page.waitForFunction(
    ({ selector, token }) => document.querySelector(selector)?.CodeMirror?.getValue().includes(token),
    { selector: `${HEADERS_EDITOR} .CodeMirror`, token },
    { timeout: 30000, polling: 100 },
  );
  assert.equal(await page.evaluate(() => window.location.href), `${baseUrl}/`);
  assert.equal(page.url(), `${baseUrl}/`);
});

test('the page needed nothing from another host and logged no errors', () => {
  assert.deepEqual(external, [], 'requests to other hosts (blocked)');
  assert.ok(requests.length >= 3, `the page, its script and its styles: ${requests}`);
  assert.deepEqual(
    problems.filter((problem) => !/nested too deep/.test(problem)),
    [],
  );
});
