// Apollo Client from Node, as an app would configure it: queries and
// mutations over HttpLink; subscriptions over its WebSocket link
// (GraphQLWsLink, graphql-transport-ws) or, with HttpLink alone, over Apollo's
// multipart HTTP subscription protocol.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { getMainDefinition } from '@apollo/client/utilities';
import WebSocket from 'ws';

import { addItem, cancelOrder, createOrder, email, firstProductId, httpUrl, token, within, wsClient } from '../lib/ordercast.mjs';

// GraphQLWsLink reads the browser's global WebSocket when an operation fails; Node 20 has none.
globalThis.WebSocket ??= WebSocket;

const ws = wsClient();
after(() => ws.dispose());

const http = new HttpLink({ uri: httpUrl, headers: { authorization: `Bearer ${token}` } });
const isSubscription = ({ query }) => {
  const definition = getMainDefinition(query);
  return definition.kind === 'OperationDefinition' && definition.operation === 'subscription';
};

/** The usual setup: subscriptions over the WebSocket, everything else over HTTP. */
const overWebSocket = new ApolloClient({
  link: ApolloLink.split(isSubscription, new GraphQLWsLink(ws), http),
  cache: new InMemoryCache(),
});
/** HttpLink only: Apollo Client subscribes with `multipart/mixed;subscriptionSpec=1.0`. */
const overMultipart = new ApolloClient({ link: http, cache: new InMemoryCache() });

const ORDER_UPDATES = gql`
  subscription ($o: ID!, $after: Int) {
    orderUpdates(orderId: $o, afterVersion: $after) {
      version
      change
      order { id status items { quantity } }
    }
  }
`;

/** Subscribes and hands out the results one at a time: `await next(ms)`. */
function results(client, variables) {
  const queue = [];
  let wake = () => {};
  const subscription = client
    .subscribe({ query: ORDER_UPDATES, variables, fetchPolicy: 'no-cache' })
    .subscribe({
      next: (result) => queue.push(result) && wake(),
      error: (error) => queue.push({ error }) && wake(),
      complete: () => queue.push({ complete: true }) && wake(),
    });
  return {
    next(ms = 15000) {
      return within(
        ms,
        new Promise((resolve) => {
          const check = () => {
            if (!queue.length) return (wake = check);
            wake = () => {};
            resolve(queue.shift());
          };
          check();
        }),
        'next Apollo subscription result',
      );
    },
    close: () => subscription.unsubscribe(),
  };
}

async function update(subscription) {
  const result = await subscription.next();
  assert.equal(result.error, undefined, result.error?.message);
  return result.data.orderUpdates;
}

test('Apollo Client query over HttpLink', { timeout: 20000 }, async () => {
  const { data } = await overWebSocket.query({ query: gql`{ me { id email } }`, fetchPolicy: 'no-cache' });
  assert.equal(data.me.email, email);
});

for (const [transport, client] of [
  ['GraphQLWsLink (WebSocket)', overWebSocket],
  ['HttpLink (multipart HTTP subscription)', overMultipart],
]) {
  test(`Apollo Client subscription over ${transport}: snapshot, changes, resume`, { timeout: 60000 }, async () => {
    const order = await createOrder();
    const product = await firstProductId();
    const live = results(client, { o: order.id });
    try {
      const snapshot = await update(live);
      assert.deepEqual([snapshot.version, snapshot.change], [order.version, 'SNAPSHOT']);
      await addItem(order.id, product, 2);
      const added = await update(live);
      assert.deepEqual([added.version, added.change], [order.version + 1, 'ITEM_ADDED']);
      assert.equal(added.order.items[0].quantity, 2);
      await cancelOrder(order.id);
      const cancelled = await update(live);
      assert.deepEqual([cancelled.change, cancelled.order.status], ['CANCELLED', 'CANCELLED']);
    } finally {
      live.close();
    }

    // A device that was offline resumes after the last version it saw.
    const resumed = results(client, { o: order.id, after: order.version });
    try {
      assert.deepEqual(
        [(await update(resumed)).change, (await update(resumed)).change],
        ['ITEM_ADDED', 'CANCELLED'],
      );
    } finally {
      resumed.close();
    }

    // And adding to the cancelled order is refused, with the code an app branches on.
    const refused = await overWebSocket
      .mutate({
        mutation: gql`mutation ($o: ID!, $p: ID!) { addItem(orderId: $o, productId: $p, quantity: 1) { id } }`,
        variables: { o: order.id, p: product },
      })
      .catch((error) => ({ error }));
    assert.ok(CombinedGraphQLErrors.is(refused.error), `${refused.error}`);
    assert.equal(refused.error.errors[0].extensions.code, 'ORDER_CANCELLED');
  });

  test(`Apollo Client subscription over ${transport}: a missing order is NOT_FOUND`, { timeout: 30000 }, async () => {
    const live = results(client, { o: '00000000-0000-7000-8000-000000000000' });
    try {
      const result = await live.next();
      assert.ok(CombinedGraphQLErrors.is(result.error), `${result.error}`);
      assert.equal(result.error.errors[0].extensions.code, 'NOT_FOUND');
    } finally {
      live.close();
    }
  });
}
