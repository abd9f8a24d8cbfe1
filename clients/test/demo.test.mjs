// The demo storefront on `/demo` in headless Chromium (Debian's, driven by
// playwright-core), opened by one customer on two devices: two browser
// contexts, so nothing is shared but the server. A change made on one device
// appears on the other at once (live, through Postgres, Debezium and Kafka,
// without a reload), and after device B cancels, device A's "Add" shows the
// database's refusal, ORDER_CANCELLED. Screenshots go to target/artifacts/.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { baseUrl, email, gql, token } from '../lib/ordercast.mjs';

const executablePath = process.env.ORDERCAST_CHROMIUM || '/usr/bin/chromium';
const artifacts = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'target', 'artifacts');
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
/** A change travels Postgres → Debezium → Kafka → ordercast → page: be patient. */
const LIVE_MS = 15000;

let browser;
/** @type {Record<'a' | 'b', Awaited<ReturnType<typeof openDevice>>>} */
const devices = {};
let orderId;
let products;

/**
 * Device A's WebSockets pass through the test, which can cut them (close
 * 1012, which graphql-ws retries) and refuse new ones until it lets them up.
 * `sent` is every frame A sent, in order.
 */
const linkOfA = { up: true, routes: [], sent: [] };

async function routeSocketsOfA(context) {
  await context.routeWebSocket(/\/graphql$/, (route) => {
    if (!linkOfA.up) return route.close({ code: 1012, reason: 'cut by the test' });
    const server = route.connectToServer();
    linkOfA.routes.push(route);
    route.onMessage((message) => {
      linkOfA.sent.push(String(message));
      server.send(message);
    });
  });
}

async function cutSocketsOfA() {
  linkOfA.up = false;
  await Promise.all(linkOfA.routes.splice(0).map((route) => route.close({ code: 1012, reason: 'cut by the test' })));
}

async function openDevice(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const device = { name, context, requests: [], external: [], problems: [], websockets: [] };
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    device.requests.push(url.href);
    if (LOCAL_HOSTS.has(url.hostname)) return route.continue();
    device.external.push(url.href);
    return route.abort('blockedbyclient');
  });
  const page = await context.newPage();
  device.page = page;
  page.on('pageerror', (error) => device.problems.push(`page error: ${error.message}`));
  page.on('crash', () => device.problems.push('the page crashed'));
  page.on('console', (message) => {
    // A blocked external request or a CSP violation shows up here.
    if (message.type() === 'error') device.problems.push(`console error: ${message.text()}`);
  });
  page.on('websocket', (socket) => {
    const frames = { url: socket.url(), sent: [] };
    device.websockets.push(frames);
    socket.on('framesent', (frame) => frames.sent.push(String(frame.payload)));
  });
  return device;
}

async function screenshot(step) {
  mkdirSync(artifacts, { recursive: true });
  for (const device of Object.values(devices)) {
    await device.page.screenshot({ path: join(artifacts, `demo-${step}-${device.name}.png`) });
  }
}

const cart = (page) => page.locator('[data-testid="cart"]');
const cartItem = (page, productId) => page.locator(`[data-testid="item"][data-product-id="${productId}"]`);
const addButton = (page, productId) =>
  page.locator(`[data-testid="product"][data-product-id="${productId}"] [data-testid="add"]`);

async function waitFor(locator, what, timeout = LIVE_MS) {
  await locator.waitFor({ state: 'visible', timeout }).catch(async (error) => {
    throw new Error(`${what}: not seen within ${timeout} ms (${error.message.split('\n')[0]})\n${await describeDevices()}`);
  });
}

/** Waits for a control as long as a live change may take, then clicks it. */
async function click(locator, what) {
  await waitFor(locator, what);
  await locator.click({ timeout: LIVE_MS });
}

/** What each page shows, for a failure message; also saved as demo-failed-*.png. */
async function describeDevices() {
  const lines = [];
  for (const device of Object.values(devices)) {
    const page = device.page;
    const shown = await page
      .evaluate(() => {
        const cart = document.querySelector('[data-testid="cart"]');
        return {
          url: window.location.href,
          connection: document.querySelector('[data-testid="connection"]')?.dataset.state,
          cart: cart && { ...cart.dataset },
          error: document.querySelector('[data-testid="error"]')?.textContent,
        };
      })
      .catch((error) => ({ unreachable: error.message }));
    lines.push(`${device.name}: ${JSON.stringify(shown)} problems=${JSON.stringify(device.problems)}`);
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, `demo-failed-${device.name}.png`), timeout: 5000 }).catch(() => {});
  }
  return lines.join('\n');
}

/** A marker set once per page load: still there means the page never reloaded. */
const markLoad = (page) => page.evaluate(() => (window.demoLoadMark = Math.random()));
const loadMark = (page) => page.evaluate(() => window.demoLoadMark);

before(async () => {
  browser = await chromium.launch({
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
  });
  devices.a = await openDevice('a');
  await routeSocketsOfA(devices.a.context);
  devices.b = await openDevice('b');
  const data = await gql('{ products(first: 50) { nodes { id name available } } }');
  products = data.products.nodes.filter((product) => product.available).slice(0, 2);
  assert.equal(products.length, 2, 'two available products: run `ordercast seed`');
});

after(async () => {
  await browser?.close();
});

test('a #token= link opens the demo signed in, live, and drops the token from the address bar', { timeout: 60000 }, async () => {
  for (const { page } of Object.values(devices)) {
    const response = await page.goto(`${baseUrl}/demo#token=${token}`, { waitUntil: 'load' });
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-security-policy'], /default-src 'self'/);
    await markLoad(page);
    assert.equal(page.url(), `${baseUrl}/demo`);
  }
  // A first load also compiles and warms up: more patience than for a live change.
  for (const { page } of Object.values(devices)) {
    await waitFor(page.locator('[data-testid="connection"][data-state="live"]'), 'the WebSocket connected', 2 * LIVE_MS);
    await waitFor(addButton(page, products[0].id), 'the catalogue');
    await waitFor(page.locator('[data-testid="who"]', { hasText: email }), 'who is signed in');
  }
  await screenshot('1-signed-in');
});

test('device A starts an order and adds a product; device B finds it live and opens it', { timeout: 60000 }, async () => {
  const { a, b } = { a: devices.a.page, b: devices.b.page };
  await click(a.getByTestId('new-order'), 'A: New order');
  await waitFor(a.locator('[data-testid="cart"][data-status="OPEN"]'), 'A: the new order in the cart');
  orderId = await cart(a).getAttribute('data-order-id');
  assert.match(orderId, /^[0-9a-f-]{36}$/);
  assert.equal(a.url(), `${baseUrl}/demo#order=${orderId}`, 'the address names the order');

  await click(addButton(a, products[0].id), 'A: Add');
  await waitFor(cartItem(a, products[0].id), 'A: the added item');
  assert.equal(await cart(a).getAttribute('data-version'), '2');

  // B did nothing: the order reached its list through myOrderUpdates.
  const listed = b.locator(`[data-testid="order"][data-order-id="${orderId}"]`);
  await waitFor(listed, "B: A's order in the list");
  await waitFor(b.locator(`[data-testid="order"][data-order-id="${orderId}"][data-items="1"]`), "B: the item in the list");
  await click(listed, "B: A's order");
  await waitFor(cartItem(b, products[0].id), "B: the item A added");
  assert.equal(await cart(b).getAttribute('data-order-id'), orderId);
  await screenshot('2-b-opened');
});

test("device B adds a product: device A's cart shows it at once, without a reload", { timeout: 60000 }, async () => {
  const { a, b } = { a: devices.a.page, b: devices.b.page };
  await click(addButton(b, products[1].id), 'B: Add');
  await waitFor(cartItem(b, products[1].id), 'B: its own item');
  await waitFor(cartItem(a, products[1].id), "A: B's item, live");
  await waitFor(a.locator('[data-testid="cart"][data-version="3"]'), 'A: version 3');
  assert.match(await a.getByTestId('last-change').textContent(), /ITEM_ADDED → version 3/);
  await screenshot('3-b-added');
});

test('device A loses its connection while B changes the order, then resumes after the last version it saw', { timeout: 60000 }, async () => {
  const { a, b } = { a: devices.a.page, b: devices.b.page };
  await cutSocketsOfA();
  await waitFor(a.locator('[data-testid="connection"][data-state="reconnecting"]'), 'A: reconnecting');
  const sentBefore = linkOfA.sent.length;

  await click(addButton(b, products[0].id), 'B: Add again');
  await waitFor(b.locator('[data-testid="cart"][data-version="4"]'), 'B: its change committed');
  assert.equal(await cart(a).getAttribute('data-version'), '3', 'A cannot have seen it yet');

  linkOfA.up = true;
  await waitFor(a.locator('[data-testid="connection"][data-state="live"]'), 'A: live again', 20000);
  await waitFor(a.locator(`[data-testid="item"][data-product-id="${products[0].id}"][data-quantity="2"]`), "A: what it missed");
  // A's order list may show version 4 first (its own resubscription starts with snapshots).
  await waitFor(a.locator('[data-testid="last-change"]', { hasText: 'version 4' }), 'A: the resumed subscription');
  assert.match(await a.getByTestId('last-change').textContent(), /ITEM_CHANGED → version 4/, 'the missed change, not a snapshot');
  const resumed = linkOfA.sent
    .slice(sentBefore)
    .map((frame) => JSON.parse(frame))
    .find((message) => message.type === 'subscribe' && message.payload.variables?.orderId === orderId);
  assert.equal(resumed?.payload.variables.afterVersion, 3, 'resubscribed after the last version seen');
});

test('device A schedules a delivery window: device B shows the order scheduled', { timeout: 60000 }, async () => {
  const { a, b } = { a: devices.a.page, b: devices.b.page };
  await click(a.getByTestId('schedule'), 'A: Schedule'); // the form starts at tomorrow 10:00–12:00
  await waitFor(a.locator('[data-testid="cart"][data-status="SCHEDULED"]'), 'A: scheduled');
  await waitFor(b.locator('[data-testid="cart"][data-status="SCHEDULED"][data-version="5"]'), 'B: scheduled, live');
  assert.match(await b.getByTestId('delivery-window').textContent(), /^Delivery /);
  assert.match(await b.getByTestId('last-change').textContent(), /SCHEDULED → version 5/);
});

test('device B cancels: device A shows the cancelled order, and its "Add" shows ORDER_CANCELLED', { timeout: 60000 }, async () => {
  const { a, b } = { a: devices.a.page, b: devices.b.page };
  await waitFor(b.getByLabel('Reason (optional)'), 'B: the cancel form');
  await b.getByLabel('Reason (optional)').fill('changed my mind on device B');
  await click(b.getByTestId('cancel'), 'B: Cancel');
  await waitFor(b.locator('[data-testid="cart"][data-status="CANCELLED"]'), 'B: cancelled');

  await waitFor(a.locator('[data-testid="cart"][data-status="CANCELLED"]'), 'A: the cancel, live');
  assert.equal(await a.getByTestId('status').textContent(), 'CANCELLED');
  assert.match(await a.getByTestId('cancel-reason').textContent(), /changed my mind on device B/);
  await screenshot('4-b-cancelled');

  const add = addButton(a, products[0].id);
  assert.ok(await add.isEnabled(), '"Add" stays enabled: the database is the one to refuse');
  await add.click();
  const alert = a.getByRole('alert');
  await waitFor(alert, 'A: the error');
  assert.equal(await a.getByTestId('error-code').textContent(), 'ORDER_CANCELLED');
  assert.match(await alert.textContent(), /^ORDER_CANCELLED: /);
  assert.equal(await cart(a).getAttribute('data-version'), '6', 'nothing was written');
  await screenshot('5-a-refused');

  for (const device of Object.values(devices)) {
    assert.notEqual(await loadMark(device.page), undefined, `${device.name} never reloaded`);
  }
});

test('a reload keeps the sign-in and the order (sessionStorage and #order=)', { timeout: 60000 }, async () => {
  const { a } = { a: devices.a.page };
  await a.reload({ waitUntil: 'load' });
  assert.equal(a.url(), `${baseUrl}/demo#order=${orderId}`);
  await waitFor(a.locator(`[data-testid="cart"][data-order-id="${orderId}"][data-status="CANCELLED"]`), 'A: the order after a reload');
  await waitFor(a.locator('[data-testid="connection"][data-state="live"]'), 'A: live again');
});

test('a bad token shows why and offers the sign-in form, where a pasted token signs in', { timeout: 60000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    await context.route('**/*', (route) =>
      LOCAL_HOSTS.has(new URL(route.request().url()).hostname) ? route.continue() : route.abort('blockedbyclient'),
    );
    const page = await context.newPage();
    await page.goto(`${baseUrl}/demo#token=not-a-token`, { waitUntil: 'load' });
    await waitFor(page.locator('[data-testid="error"][data-code="UNAUTHENTICATED"]'), 'the refusal');
    await waitFor(page.getByTestId('sign-in'), 'the sign-in form');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused token is not kept');

    await page.getByLabel('Token').fill(`Bearer ${token}`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitFor(page.locator('[data-testid="who"]', { hasText: email }), 'signed in', 2 * LIVE_MS);
    await waitFor(addButton(page, products[0].id), 'the catalogue, refused with the bad token');
    assert.ok(await page.getByTestId('sign-in').isHidden());
    await page.getByTestId('sign-out').click();
    await waitFor(page.getByTestId('sign-in'), 'signed out');
  } finally {
    await context.close();
  }
});

test('the demo needed nothing from another host, logged no errors, and authenticated its WebSocket', () => {
  for (const device of Object.values(devices)) {
    assert.deepEqual(device.external, [], `${device.name}: requests to other hosts (blocked)`);
    assert.ok(device.requests.some((url) => url.includes('/demo/demo.js?v=')), `${device.name}: the script came from ordercast`);
    assert.ok(device.requests.some((url) => url.includes('/demo/demo.css?v=')), `${device.name}: the styles came from ordercast`);
    assert.deepEqual(device.problems, [], `${device.name}: console`);
    for (const socket of device.websockets) assert.equal(new URL(socket.url).host, new URL(baseUrl).host);
  }
  // A's sockets went through the test's route, B's were watched: both authenticated in connection_init.
  const inits = [linkOfA.sent[0], ...devices.b.websockets.map((socket) => socket.sent[0])];
  assert.ok(inits.length >= 2, 'a WebSocket on each device');
  for (const frame of inits) {
    const init = JSON.parse(frame);
    assert.equal(init.type, 'connection_init');
    assert.deepEqual(init.payload, { authorization: `Bearer ${token}` });
  }
});
