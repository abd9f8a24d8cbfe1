// Shared by the client tests: where ordercast is, who we are, and small
// helpers for GraphQL over HTTP and graphql-ws. Not a test file itself
// (node --test runs only clients/test/).
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set; run these tests through scripts/client-tests.sh (make client-tests)`);
  }
  return value;
}

/** e.g. http://127.0.0.1:8080 */
export const baseUrl = required('ORDERCAST_URL').replace(/\/+$/, '');
export const httpUrl = `${baseUrl}/graphql`;
export const wsUrl = httpUrl.replace(/^http/, 'ws');
/** A bearer token (without "Bearer ") for `email`. */
export const token = required('ORDERCAST_TOKEN');
export const email = process.env.ORDERCAST_EMAIL || 'alice@example.com';
/** The server's connection_init timeout (the runner starts it with 1000). */
export const initTimeoutMs = Number(process.env.ORDERCAST_WS_INIT_TIMEOUT_MS || 1000);

/** Rejects with `label` if `promise` takes longer than `ms`. */
export function within(ms, promise, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** POSTs one GraphQL request; resolves to the whole response body. */
export async function post(query, variables = {}, { bearer = token } = {}) {
  const response = await fetch(httpUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  return { status: response.status, ...body };
}

/** POSTs one GraphQL request and returns `data`, failing on any error. */
export async function gql(query, variables = {}, options = {}) {
  const body = await post(query, variables, options);
  if (body.errors?.length) {
    throw new Error(`GraphQL errors: ${JSON.stringify(body.errors)}`);
  }
  return body.data;
}

export async function firstProductId() {
  const data = await gql('{ products(first: 5) { edges { node { id available } } } }');
  const product = data.products.edges.map((edge) => edge.node).find((node) => node.available);
  if (!product) throw new Error('no available product: run `ordercast seed`');
  return product.id;
}

export async function createOrder() {
  const data = await gql('mutation { createOrder { id version status } }');
  return data.createOrder;
}

export async function addItem(orderId, productId, quantity = 1) {
  const data = await gql(
    'mutation($o: ID!, $p: ID!, $q: Int!) { addItem(orderId: $o, productId: $p, quantity: $q) { id version status } }',
    { o: orderId, p: productId, q: quantity },
  );
  return data.addItem;
}

export async function cancelOrder(orderId, reason = 'client test') {
  const data = await gql(
    'mutation($o: ID!, $r: String) { cancelOrder(orderId: $o, reason: $r) { id version status } }',
    { o: orderId, r: reason },
  );
  return data.cancelOrder;
}

/** A graphql-ws client that authenticates in connection_init, as the docs say. */
export function wsClient({ bearer = token, ...options } = {}) {
  return createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    lazy: true,
    retryAttempts: 0,
    connectionParams: { authorization: `Bearer ${bearer}` },
    ...options,
  });
}

/**
 * Subscribes with graphql-ws and hands out the results one at a time:
 * `await sub.next(ms)` resolves to the next ExecutionResult.
 */
export function subscribe(client, payload) {
  const iterator = client.iterate(payload);
  return {
    async next(ms = 15000) {
      const step = await within(ms, iterator.next(), `next result of ${payload.query}`);
      if (step.done) throw new Error('the subscription completed');
      return step.value;
    },
    async close() {
      await iterator.return?.();
    },
  };
}
