// ordercast's demo storefront: bundled by build.mjs into src/demo/assets/ and
// served by ordercast itself at /demo. Plain DOM and graphql-ws, so the page
// shows the API as a web client would use it: queries and mutations over
// HTTP, live updates over graphql-transport-ws on the same /graphql.
//
// Every state of an order the page shows is one Postgres committed: the
// answer of a mutation, or an update pushed live. Nothing is guessed locally,
// and "Add" stays enabled on a cancelled order, so the user sees the database
// refuse it (ORDER_CANCELLED) rather than a button that hides the rule.
import { createClient } from 'graphql-ws';
import './demo.css';

/** Where a signed-in tab keeps its token: a reload stays signed in, a new tab does not. */
const TOKEN_KEY = 'ordercast-demo:token';
const httpUrl = new URL('/graphql', window.location.href).href;
const wsUrl = httpUrl.replace(/^http/, 'ws');

const ORDER_FIELDS = `id status version totalCents cancelReason createdAt
  deliveryWindow { start end }
  items { id quantity unitPriceCents lineTotalCents product { id sku name } }`;
const UPDATE_FIELDS = `version change resync order { ${ORDER_FIELDS} }`;

const state = {
  token: null,
  me: null,
  products: [],
  /** Every order seen, by id, at the newest version seen. */
  orders: new Map(),
  selectedId: null,
  /** How the selected order last changed, as its subscription said. */
  lastChange: null,
  connection: 'offline',
};

/** The open WebSocket client and its subscriptions, while signed in. */
let live = null;

const $ = (id) => document.getElementById(id);

// ---- GraphQL over HTTP ------------------------------------------------------

/** One GraphQL request; resolves to `data`, or throws a DemoError with the first GraphQL error. */
async function request(query, variables = {}) {
  const headers = { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json;q=0.9' };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  let body;
  try {
    const response = await fetch(httpUrl, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
    body = await response.json();
  } catch (cause) {
    throw new DemoError('NETWORK', `ordercast could not be reached (${cause.message})`);
  }
  if (body.errors?.length) throw DemoError.from(body.errors[0]);
  return body.data;
}

class DemoError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }

  static from(graphqlError) {
    return new DemoError(graphqlError.extensions?.code ?? 'ERROR', graphqlError.message);
  }
}

/** What a graphql-ws sink's `error` receives: GraphQL errors, a CloseEvent, or an Error. */
function subscriptionError(error) {
  if (Array.isArray(error)) return DemoError.from(error[0]);
  if (error && typeof error.code === 'number') {
    const code = error.code === 4403 || error.code === 4401 ? 'UNAUTHENTICATED' : 'CONNECTION_CLOSED';
    return new DemoError(code, `live updates stopped: the server closed the connection (${error.code} ${error.reason || ''})`.trim());
  }
  return new DemoError('CONNECTION_CLOSED', `live updates stopped: ${error?.message ?? error}`);
}

// ---- State ------------------------------------------------------------------

/** Keeps `order` unless a newer version is already known (a snapshot always wins). */
function remember(order, { replace = false } = {}) {
  const known = state.orders.get(order.id);
  if (!known || replace || order.version > known.version) state.orders.set(order.id, order);
}

function receive(update, fromOrderSubscription) {
  remember(update.order, { replace: update.resync || update.change === 'SNAPSHOT' });
  if (fromOrderSubscription && update.order.id === state.selectedId) {
    state.lastChange = `${update.change}${update.resync ? ' (resync)' : ''} → version ${update.version}`;
    flash();
  }
  render();
}

function showError(error) {
  const element = $('error');
  if (!error) {
    element.hidden = true;
    element.replaceChildren();
    return;
  }
  const code = error.code ?? 'ERROR';
  element.replaceChildren(h('strong', { 'data-testid': 'error-code' }, code), ': ', error.message);
  element.dataset.code = code;
  element.hidden = false;
}

/** Runs a user action: clears the last error, shows this one's. */
async function act(action) {
  showError(null);
  try {
    await action();
  } catch (error) {
    showError(error instanceof DemoError ? error : new DemoError('ERROR', error.message));
  }
  render();
}

// ---- Live updates -----------------------------------------------------------

/** A capped, jittered backoff: a demo left open reconnects within seconds of the server's return. */
const retryWait = (retries) =>
  new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** retries, 8000) + Math.random() * 500));

function connect(token) {
  const client = createClient({
    url: wsUrl,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: Infinity,
    retryWait,
    keepAlive: 10000,
  });
  client.on('connecting', () => setConnection('connecting'));
  client.on('connected', (_socket, _payload, wasRetry) => {
    setConnection('live');
    // Orders that ended while offline are no longer in myOrderUpdates' snapshot.
    if (wasRetry) loadAccount().catch(showError);
  });
  client.on('closed', () => {
    if (live?.client === client) setConnection('reconnecting');
  });

  const account = client.subscribe(
    { query: `subscription MyOrders { myOrderUpdates { ${UPDATE_FIELDS} } }` },
    {
      next: ({ data, errors }) => (errors?.length ? showError(DemoError.from(errors[0])) : receive(data.myOrderUpdates, false)),
      error: (error) => stopped(client, error),
      complete: () => {},
    },
  );
  return { client, account, order: null };
}

/**
 * Follows one order. graphql-ws sends this same payload again whenever it
 * resubscribes after a reconnect, so `variables.afterVersion` always holds the
 * last version seen: the server then sends only what was missed (or a fresh
 * snapshot), exactly once and in order.
 */
function watchOrder(id) {
  if (!live || live.order?.id === id) return;
  live.order?.dispose();
  const variables = { orderId: id };
  const client = live.client;
  const dispose = client.subscribe(
    { query: `subscription OrderUpdates($orderId: ID!, $afterVersion: Int) { orderUpdates(orderId: $orderId, afterVersion: $afterVersion) { ${UPDATE_FIELDS} } }`, variables },
    {
      next: ({ data, errors }) => {
        if (errors?.length) return showError(DemoError.from(errors[0]));
        variables.afterVersion = data.orderUpdates.version;
        receive(data.orderUpdates, true);
      },
      error: (error) => stopped(client, error),
      complete: () => {},
    },
  );
  live.order = { id, dispose };
}

function stopped(client, error) {
  if (live?.client !== client) return;
  const reason = subscriptionError(error);
  showError(reason);
  if (reason.code === 'UNAUTHENTICATED') signOut({ keepError: true });
}

function setConnection(connection) {
  state.connection = connection;
  renderHeader();
}

// ---- Signing in -------------------------------------------------------------

/**
 * Takes `#token=` (a link `make run` prints) into sessionStorage and
 * `#order=` as the order to show. The fragment never reaches the server; the
 * token is dropped from the address bar at once, so it stays out of history.
 * Returns the link's token, if it had one.
 */
function takeFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get('token');
  const order = params.get('order');
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  if (order) state.selectedId = order;
  if (token !== null) window.history.replaceState(window.history.state, '', addressOf(order));
  return token || null;
}

const addressOf = (orderId) =>
  window.location.pathname + window.location.search + (orderId ? `#order=${encodeURIComponent(orderId)}` : '');

async function signIn(token) {
  signOut({ keepError: true, forget: false });
  state.token = token;
  live = connect(token);
  if (state.selectedId) watchOrder(state.selectedId);
  render();
  // The catalogue needs no token, but a refused one fails it too: load it again if so.
  await act(() => Promise.all([loadAccount(), state.products.length ? null : loadProducts()]));
  if (!state.me) signOut({ keepError: true });
}

function signOut({ keepError = false, forget = true } = {}) {
  if (forget) sessionStorage.removeItem(TOKEN_KEY);
  const previous = live;
  live = null;
  previous?.order?.dispose();
  previous?.account();
  previous?.client.dispose();
  state.token = null;
  state.me = null;
  state.orders.clear();
  state.lastChange = null;
  state.connection = 'offline';
  if (!keepError) showError(null);
  render();
}

async function loadAccount() {
  const data = await request(`query Account { me { email displayName } orders(first: 20) { nodes { ${ORDER_FIELDS} } } }`);
  state.me = data.me;
  for (const order of data.orders.nodes) remember(order);
  render();
}

async function loadProducts() {
  const data = await request('query Catalogue { products(first: 50) { nodes { id sku name priceCents available } } }');
  state.products = data.products.nodes;
  render();
}

// ---- Actions ----------------------------------------------------------------

function select(id) {
  if (state.selectedId !== id) state.lastChange = null;
  state.selectedId = id;
  window.history.replaceState(window.history.state, '', addressOf(id));
  watchOrder(id);
  render();
}

async function mutate(field, document, variables) {
  const data = await request(document, variables);
  remember(data[field]);
  return data[field];
}

const createOrder = () => mutate('createOrder', `mutation CreateOrder { createOrder { ${ORDER_FIELDS} } }`);

async function newOrder() {
  select((await createOrder()).id);
}

/** Adds one of a product; with no order picked, starts one first. */
async function addProduct(productId) {
  if (!state.selectedId) select((await createOrder()).id);
  await mutate(
    'addItem',
    `mutation AddItem($orderId: ID!, $productId: ID!) { addItem(orderId: $orderId, productId: $productId, quantity: 1) { ${ORDER_FIELDS} } }`,
    { orderId: state.selectedId, productId },
  );
}

async function oneLess(item) {
  if (item.quantity > 1) {
    await mutate(
      'setItemQuantity',
      `mutation SetQuantity($orderId: ID!, $productId: ID!, $quantity: Int!) { setItemQuantity(orderId: $orderId, productId: $productId, quantity: $quantity) { ${ORDER_FIELDS} } }`,
      { orderId: state.selectedId, productId: item.product.id, quantity: item.quantity - 1 },
    );
  } else {
    await mutate(
      'removeItem',
      `mutation RemoveItem($orderId: ID!, $productId: ID!) { removeItem(orderId: $orderId, productId: $productId) { ${ORDER_FIELDS} } }`,
      { orderId: state.selectedId, productId: item.product.id },
    );
  }
}

async function schedule() {
  const start = $('window-start').value;
  const end = $('window-end').value;
  if (!start || !end) throw new DemoError('BAD_USER_INPUT', 'pick when the delivery window starts and ends');
  await mutate(
    'scheduleOrder',
    `mutation Schedule($orderId: ID!, $window: DeliveryWindowInput!) { scheduleOrder(orderId: $orderId, window: $window) { ${ORDER_FIELDS} } }`,
    { orderId: state.selectedId, window: { start: new Date(start).toISOString(), end: new Date(end).toISOString() } },
  );
}

const reopen = () =>
  mutate('reopenOrder', `mutation Reopen($orderId: ID!) { reopenOrder(orderId: $orderId) { ${ORDER_FIELDS} } }`, {
    orderId: state.selectedId,
  });

const cancel = () =>
  mutate(
    'cancelOrder',
    `mutation Cancel($orderId: ID!, $reason: String) { cancelOrder(orderId: $orderId, reason: $reason) { ${ORDER_FIELDS} } }`,
    { orderId: state.selectedId, reason: $('cancel-reason').value.trim() || null },
  );

// ---- Rendering --------------------------------------------------------------

/** A DOM element: `h('button', { type: 'button', onclick }, 'Add')`. */
function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.className = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  element.append(...children.flat().filter((child) => child != null && child !== false));
  return element;
}

/**
 * Brings a list up to date, keeping every row whose `signature` did not
 * change: the customer's other devices and sessions keep changing orders, and
 * a button rebuilt under the pointer (or the keyboard focus) would be lost.
 */
function renderRows(container, items, { key, signature, build }) {
  const existing = new Map([...container.children].map((row) => [row.dataset.rowKey, row]));
  const rows = items.map((item) => {
    const rowKey = key(item);
    const rowSignature = signature(item);
    const old = existing.get(rowKey);
    if (old && old.dataset.signature === rowSignature) return old;
    const row = build(item);
    row.dataset.rowKey = rowKey;
    row.dataset.signature = rowSignature;
    return row;
  });
  rows.forEach((row, index) => {
    const current = container.children[index];
    if (current !== row) container.insertBefore(row, current ?? null);
  });
  while (container.children.length > rows.length) container.lastElementChild.remove();
}

/** The orders list shows this many, newest first. */
const LISTED_ORDERS = 25;

const money = (cents) => (cents / 100).toFixed(2);
/** The end of an id: ids are UUIDv7, whose first digits are a timestamp every recent order shares. */
const shortId = (id) => `…${id.slice(-6)}`;
const itemCount = (order) => order.items.reduce((sum, item) => sum + item.quantity, 0);
const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
const when = (iso) => new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });

function render() {
  renderHeader();
  renderProducts();
  renderOrders();
  renderCart();
}

function renderHeader() {
  const signedIn = Boolean(state.token);
  $('who').textContent = state.me ? `${state.me.displayName} (${state.me.email ?? 'no email'})` : '';
  const connection = $('connection');
  connection.textContent = signedIn ? state.connection : 'signed out';
  connection.dataset.state = signedIn ? state.connection : 'offline';
  $('sign-out').hidden = !signedIn;
  $('sign-in').hidden = signedIn;
  $('new-order').disabled = !signedIn;
}

function renderProducts() {
  renderRows($('products'), state.products, {
    key: (product) => product.id,
    signature: (product) => JSON.stringify([product, Boolean(state.token)]),
    build: (product) =>
      h(
        'li',
        { 'data-testid': 'product', 'data-product-id': product.id, 'data-sku': product.sku },
        h('span', { class: 'name' }, product.name),
        h('span', { class: 'price' }, money(product.priceCents)),
        product.available ? null : h('span', { class: 'tag' }, 'sold out'),
        h(
          'button',
          {
            type: 'button',
            'data-testid': 'add',
            'aria-label': `Add ${product.name}`,
            disabled: !state.token,
            onclick: () => act(() => addProduct(product.id)),
          },
          'Add',
        ),
      ),
  });
}

function renderOrders() {
  const orders = [...state.orders.values()]
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
    .slice(0, LISTED_ORDERS);
  const placeholder = state.token ? 'No orders yet.' : 'Sign in to see your orders.';
  renderRows($('orders'), orders.length ? orders : [placeholder], {
    key: (order) => (typeof order === 'string' ? 'none' : order.id),
    signature: (order) => (typeof order === 'string' ? order : `${order.version} ${order.id === state.selectedId}`),
    build: (order) =>
      typeof order === 'string'
        ? h('li', { class: 'hint' }, order)
        : h(
            'li',
            {},
            h(
              'button',
              {
                type: 'button',
                class: 'order',
                'data-testid': 'order',
                'data-order-id': order.id,
                'data-status': order.status,
                'data-items': itemCount(order),
                'aria-pressed': order.id === state.selectedId ? 'true' : 'false',
                onclick: () => select(order.id),
              },
              h('code', { title: order.id }, shortId(order.id)),
              h('time', { datetime: order.createdAt }, clock(order.createdAt)),
              h('span', { class: `status ${order.status.toLowerCase()}` }, order.status),
              h('span', {}, itemCount(order) === 1 ? '1 item' : `${itemCount(order)} items`),
              h('span', { class: 'price' }, money(order.totalCents)),
            ),
          ),
  });
}

function renderCart() {
  const order = state.selectedId ? state.orders.get(state.selectedId) : undefined;
  const cart = document.querySelector('[data-testid="cart"]');
  cart.dataset.orderId = order?.id ?? '';
  cart.dataset.status = order?.status ?? '';
  cart.dataset.version = order?.version ?? '';
  $('cart-empty').hidden = Boolean(order);
  $('cart-empty').textContent = state.selectedId && !order ? 'Loading the order…' : 'Pick an order, or start a new one.';
  $('cart-order').hidden = !order;
  if (!order) return;

  $('cart-id').textContent = order.id;
  $('cart-status').textContent = order.status;
  $('cart-status').className = `status ${order.status.toLowerCase()}`;
  $('cart-version').textContent = String(order.version);
  $('cart-total').textContent = money(order.totalCents);
  $('last-change').textContent = state.lastChange ? `Last live update: ${state.lastChange}` : '';
  $('cart-window').textContent = order.deliveryWindow
    ? `Delivery ${when(order.deliveryWindow.start)} – ${when(order.deliveryWindow.end)}`
    : '';
  $('cart-reason').textContent = order.status === 'CANCELLED' ? `Cancelled${order.cancelReason ? `: ${order.cancelReason}` : ''}` : '';
  const cancelled = order.status === 'CANCELLED';
  $('schedule-fields').hidden = cancelled;
  $('cancel-fields').hidden = cancelled;
  $('schedule').textContent = order.status === 'SCHEDULED' ? 'Move window' : 'Schedule';
  $('reopen').hidden = order.status !== 'SCHEDULED';

  renderRows($('items'), order.items.length ? order.items : ['empty'], {
    key: (item) => (item === 'empty' ? 'empty' : item.product.id),
    signature: (item) => JSON.stringify(item),
    build: (item) =>
      item === 'empty'
        ? h('tr', {}, h('td', { colspan: 5, class: 'hint' }, 'The cart is empty: add a product.'))
        : h(
            'tr',
            { 'data-testid': 'item', 'data-product-id': item.product.id, 'data-quantity': item.quantity },
            h('th', { scope: 'row' }, item.product.name),
            h('td', { 'data-testid': 'quantity' }, String(item.quantity)),
            h('td', {}, money(item.unitPriceCents)),
            h('td', {}, money(item.lineTotalCents)),
            h(
              'td',
              { class: 'change' },
              h(
                'button',
                { type: 'button', 'aria-label': `One ${item.product.name} less`, onclick: () => act(() => oneLess(item)) },
                '−',
              ),
              h(
                'button',
                { type: 'button', 'aria-label': `One ${item.product.name} more`, onclick: () => act(() => addProduct(item.product.id)) },
                '+',
              ),
            ),
          ),
  });
}

/** Marks the cart for a moment when a live update changed it. */
function flash() {
  const cart = document.querySelector('[data-testid="cart"]');
  cart.classList.remove('updated');
  void cart.offsetWidth; // restarts the CSS animation
  cart.classList.add('updated');
}

// ---- Start ------------------------------------------------------------------

/** A datetime-local value (local time, minutes) for `date`. */
function localInput(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function defaultWindow() {
  const start = new Date();
  start.setDate(start.getDate() + 1);
  start.setHours(10, 0, 0, 0);
  const end = new Date(start);
  end.setHours(12);
  $('window-start').value = localInput(start);
  $('window-end').value = localInput(end);
}

$('new-order').addEventListener('click', () => act(newOrder));
$('schedule').addEventListener('click', () => act(schedule));
$('reopen').addEventListener('click', () => act(reopen));
$('cancel').addEventListener('click', () => act(cancel));
$('sign-out').addEventListener('click', () => signOut());
$('sign-in').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token').value.trim().replace(/^Bearer\s+/i, '');
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').value = '';
  signIn(token);
});
// A link pasted into an open page only changes the fragment (no new load).
window.addEventListener('hashchange', () => {
  const token = takeFragment();
  if (token) signIn(token);
  else if (state.selectedId) select(state.selectedId);
});

defaultWindow();
const linkToken = takeFragment();
render();
const saved = linkToken ?? sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
else act(loadProducts);
