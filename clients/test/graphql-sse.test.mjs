// The graphql-sse client (Server-Sent Events, distinct connections mode): one
// HTTP request per operation, authenticated by its Authorization header.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createClient } from 'graphql-sse';

import { addItem, cancelOrder, createOrder, email, firstProductId, httpUrl, token, within } from '../lib/ordercast.mjs';

const ORDER_UPDATES = `subscription ($o: ID!, $after: Int) {
  orderUpdates(orderId: $o, afterVersion: $after) { version change order { status items { quantity } } }
}`;

function sse(bearer = token) {
  return createClient({
    url: httpUrl,
    headers: bearer ? { authorization: `Bearer ${bearer}` } : {},
    retryAttempts: 0,
  });
}

/** The results of one operation, one at a time: `await next(ms)`; `done` once it completed. */
function iterate(client, query, variables = {}) {
  const iterator = client.iterate({ query, variables });
  return {
    async next(ms = 15000) {
      const step = await within(ms, iterator.next(), `next graphql-sse result of ${query}`);
      return step.done ? { done: true } : step.value;
    },
    close: () => iterator.return?.(),
  };
}

test('graphql-sse query', { timeout: 20000 }, async () => {
  const results = iterate(sse(), '{ me { email } }');
  assert.equal((await results.next()).data.me.email, email);
  assert.deepEqual(await results.next(), { done: true });
});

test('graphql-sse subscription: snapshot, changes, resume', { timeout: 60000 }, async () => {
  const client = sse();
  const order = await createOrder();
  const product = await firstProductId();
  const live = iterate(client, ORDER_UPDATES, { o: order.id });
  try {
    const snapshot = (await live.next()).data.orderUpdates;
    assert.deepEqual([snapshot.version, snapshot.change], [order.version, 'SNAPSHOT']);
    await addItem(order.id, product, 3);
    const added = (await live.next()).data.orderUpdates;
    assert.deepEqual([added.change, added.order.items[0].quantity], ['ITEM_ADDED', 3]);
    await cancelOrder(order.id);
    assert.equal((await live.next()).data.orderUpdates.order.status, 'CANCELLED');
  } finally {
    await live.close();
  }
  const resumed = iterate(client, ORDER_UPDATES, { o: order.id, after: order.version });
  try {
    assert.equal((await resumed.next()).data.orderUpdates.change, 'ITEM_ADDED');
    assert.equal((await resumed.next()).data.orderUpdates.change, 'CANCELLED');
  } finally {
    await resumed.close();
  }
  client.dispose();
});

test('graphql-sse subscription without a token: UNAUTHENTICATED, then complete', { timeout: 20000 }, async () => {
  const order = await createOrder();
  const results = iterate(sse(null), ORDER_UPDATES, { o: order.id });
  const refused = await results.next();
  assert.equal(refused.errors[0].extensions.code, 'UNAUTHENTICATED', JSON.stringify(refused));
  assert.deepEqual(await results.next(), { done: true });
});
