// urql from Node, as an app would use it: queries and mutations over HTTP
// (fetchExchange), subscriptions over graphql-ws (subscriptionExchange).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { Client, fetchExchange, gql, subscriptionExchange } from '@urql/core';
import { persistedExchange } from '@urql/exchange-persisted';

import { email, httpUrl, token, within, wsClient } from '../lib/ordercast.mjs';

const ws = wsClient();
after(() => ws.dispose());

const client = new Client({
  url: httpUrl,
  // No cache exchange: every operation goes to the server.
  exchanges: [
    fetchExchange,
    subscriptionExchange({
      forwardSubscription(request) {
        const input = { ...request, query: request.query || '' };
        return {
          subscribe(sink) {
            return { unsubscribe: ws.subscribe(input, sink) };
          },
        };
      },
    }),
  ],
  fetchOptions: () => ({ headers: { authorization: `Bearer ${token}` } }),
  requestPolicy: 'network-only',
});

test('urql query: me', { timeout: 20000 }, async () => {
  const result = await client.query(gql`{ me { id email displayName } }`, {}).toPromise();
  assert.equal(result.error, undefined, result.error?.message);
  assert.equal(result.data.me.email, email);
});

test('urql query: products', { timeout: 20000 }, async () => {
  const result = await client
    .query(gql`query($n: Int) { products(first: $n) { edges { node { id sku priceCents } } pageInfo { hasNextPage } } }`, { n: 2 })
    .toPromise();
  assert.equal(result.error, undefined, result.error?.message);
  assert.equal(result.data.products.edges.length, 2);
});

test('urql mutation and subscription: ITEM_ADDED follows the SNAPSHOT', { timeout: 60000 }, async () => {
  const created = await client.mutation(gql`mutation { createOrder { id status version } }`, {}).toPromise();
  assert.equal(created.error, undefined, created.error?.message);
  const order = created.data.createOrder;
  assert.equal(order.status, 'OPEN');

  const products = await client.query(gql`{ products(first: 1) { edges { node { id } } } }`, {}).toPromise();
  const productId = products.data.products.edges[0].node.id;

  const updates = [];
  let wake = () => {};
  const { unsubscribe } = client
    .subscription(
      gql`subscription($o: ID!) { orderUpdates(orderId: $o) { version change order { id status items { quantity } } } }`,
      { o: order.id },
    )
    .subscribe((result) => {
      updates.push(result);
      wake();
    });
  const nextUpdate = (ms) =>
    within(
      ms,
      new Promise((resolve) => {
        const check = () => {
          if (!updates.length) return (wake = check);
          wake = () => {}; // this waiter is done: leave later results queued
          resolve(updates.shift());
        };
        check();
      }),
      'next urql subscription result',
    );
  try {
    const snapshot = await nextUpdate(15000);
    assert.equal(snapshot.error, undefined, snapshot.error?.message);
    assert.equal(snapshot.data.orderUpdates.change, 'SNAPSHOT');
    assert.equal(snapshot.data.orderUpdates.version, 1);

    const added = await client
      .mutation(
        gql`mutation($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p, quantity: 3) { version totalCents } }`,
        { o: order.id, p: productId },
      )
      .toPromise();
    assert.equal(added.error, undefined, added.error?.message);
    assert.equal(added.data.addItem.version, 2);

    const pushed = await nextUpdate(20000);
    assert.equal(pushed.error, undefined, pushed.error?.message);
    assert.equal(pushed.data.orderUpdates.change, 'ITEM_ADDED');
    assert.equal(pushed.data.orderUpdates.version, 2);
    assert.deepEqual(pushed.data.orderUpdates.order.items, [{ quantity: 3 }]);
  } finally {
    unsubscribe();
  }
});

test('urql persisted queries (APQ over GET): the hash alone once the server has the document', { timeout: 20000 }, async () => {
  const sent = [];
  const recording = (url, init) => {
    const request = new URL(url);
    const body = init?.body ? JSON.parse(init.body) : undefined;
    sent.push({
      method: init?.method ?? 'GET',
      query: body ? body.query : request.searchParams.get('query'),
      extensions: body ? body.extensions : JSON.parse(request.searchParams.get('extensions') ?? 'null'),
    });
    return fetch(url, init);
  };
  const persisted = new Client({
    url: httpUrl,
    fetch: recording,
    exchanges: [persistedExchange({ preferGetForPersistedQueries: true }), fetchExchange],
    fetchOptions: () => ({ headers: { authorization: `Bearer ${token}` } }),
    requestPolicy: 'network-only',
  });
  // An alias unique to this run: the server has never seen this document.
  const document = gql(`{ r${Date.now()}: me { email } }`);

  const first = await persisted.query(document, {}).toPromise();
  assert.equal(first.error, undefined, first.error?.message);
  assert.equal(Object.values(first.data)[0].email, email);
  assert.equal(sent.length, 2, JSON.stringify(sent));
  assert.ok(!sent[0].query, 'the first try sends only the hash');
  assert.equal(sent[0].extensions.persistedQuery.version, 1);
  assert.ok(sent[1].query, 'after PERSISTED_QUERY_NOT_FOUND the document follows with its hash');

  sent.length = 0;
  const second = await persisted.query(document, {}).toPromise();
  assert.equal(second.error, undefined, second.error?.message);
  assert.deepEqual(second.data, first.data);
  assert.equal(sent.length, 1, JSON.stringify(sent));
  assert.equal(sent[0].method, 'GET');
  assert.ok(!sent[0].query, 'from then on the hash alone');
});
