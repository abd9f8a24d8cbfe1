// graphql-ws (the reference client) end to end: mutations over HTTP, live
// updates over WebSocket, pushed from Postgres through Debezium and Kafka.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { addItem, cancelOrder, createOrder, firstProductId, subscribe, wsClient } from '../lib/ordercast.mjs';

const UPDATES = `subscription($o: ID!) {
  orderUpdates(orderId: $o) { version change resync order { id status version items { quantity } } }
}`;

const client = wsClient();
after(() => client.dispose());

test('orderUpdates: a SNAPSHOT, then a cancel made over HTTP arrives through CDC', { timeout: 60000 }, async () => {
  const productId = await firstProductId();
  const order = await createOrder();
  assert.equal(order.status, 'OPEN');
  assert.equal(order.version, 1);
  const added = await addItem(order.id, productId, 2);
  assert.equal(added.version, 2);

  const updates = subscribe(client, { query: UPDATES, variables: { o: order.id } });
  try {
    const snapshot = await updates.next();
    assert.equal(snapshot.errors, undefined, JSON.stringify(snapshot.errors));
    const first = snapshot.data.orderUpdates;
    assert.equal(first.change, 'SNAPSHOT');
    assert.equal(first.version, 2);
    assert.equal(first.order.id, order.id);
    assert.equal(first.order.status, 'OPEN');
    assert.deepEqual(first.order.items, [{ quantity: 2 }]);

    const cancelled = await cancelOrder(order.id);
    assert.equal(cancelled.version, 3);

    const pushed = await updates.next(20000);
    assert.equal(pushed.errors, undefined, JSON.stringify(pushed.errors));
    const update = pushed.data.orderUpdates;
    assert.equal(update.change, 'CANCELLED');
    assert.equal(update.version, 3);
    assert.equal(update.resync, false);
    assert.equal(update.order.status, 'CANCELLED');
    assert.equal(update.order.version, 3);
  } finally {
    await updates.close();
  }
});
