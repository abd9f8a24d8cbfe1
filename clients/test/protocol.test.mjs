// The graphql-transport-ws protocol, frame by frame, over a raw WebSocket:
// the close codes of https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md
// and ping/pong. The server start must set ORDERCAST_WS_INIT_TIMEOUT_MS
// (scripts/client-tests.sh uses 1000) so the init-timeout test stays short.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import WebSocket from 'ws';

import { initTimeoutMs, token, within, wsUrl } from '../lib/ordercast.mjs';

const PROTOCOL = 'graphql-transport-ws';
const SUBSCRIPTION = 'subscription { myOrderUpdates { version change order { id } } }';

/** Opens a socket and records every message and the close. */
async function connect() {
  const socket = new WebSocket(wsUrl, PROTOCOL);
  const messages = [];
  let wake = () => {};
  socket.on('message', (data, isBinary) => {
    messages.push(isBinary ? { binary: data } : JSON.parse(data.toString('utf8')));
    wake();
  });
  const closed = new Promise((resolve) => {
    socket.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString('utf8'), at: Date.now() });
      wake();
    });
  });
  await within(
    5000,
    new Promise((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('error', reject);
    }),
    'WebSocket open',
  );
  assert.equal(socket.protocol, PROTOCOL, 'the server selects graphql-transport-ws');

  let isClosed = false;
  closed.then(() => (isClosed = true));
  return {
    socket,
    closed,
    send(message) {
      socket.send(typeof message === 'string' ? message : JSON.stringify(message));
    },
    /** The next message that is not the server's own keep-alive ping. */
    async next(ms = 5000) {
      return within(
        ms,
        new Promise((resolve, reject) => {
          const check = () => {
            while (messages.length) {
              const message = messages.shift();
              if (message.type === 'ping') {
                socket.send(JSON.stringify({ type: 'pong' }));
                continue;
              }
              wake = () => {}; // this waiter is done: leave later messages queued
              return resolve(message);
            }
            if (isClosed) {
              wake = () => {};
              return closed.then((c) => reject(new Error(`socket closed: ${c.code} ${c.reason}`)));
            }
            wake = check;
          };
          check();
        }),
        'next message',
      );
    },
    async closeCode(ms = 5000) {
      const { code, reason } = await within(ms, closed, 'the server closes the socket');
      return { code, reason };
    },
    end() {
      if (!isClosed) socket.terminate();
    },
  };
}

/** A connection the server has acknowledged. */
async function acknowledged(bearer = token) {
  const ws = await connect();
  ws.send({ type: 'connection_init', payload: { authorization: `Bearer ${bearer}` } });
  const ack = await ws.next();
  assert.equal(ack.type, 'connection_ack', JSON.stringify(ack));
  return ws;
}

test('no connection_init within the init timeout: 4408', { timeout: initTimeoutMs + 15000 }, async () => {
  const ws = await connect();
  try {
    const opened = Date.now();
    const { code, reason } = await ws.closeCode(initTimeoutMs + 10000);
    assert.equal(code, 4408, `closed with ${code} ${reason}`);
    assert.ok(Date.now() - opened >= initTimeoutMs - 250, 'not closed before the timeout');
  } finally {
    ws.end();
  }
});

test('subscribe before connection_ack: 4401', { timeout: 15000 }, async () => {
  const ws = await connect();
  try {
    ws.send({ id: '1', type: 'subscribe', payload: { query: SUBSCRIPTION } });
    const { code, reason } = await ws.closeCode();
    assert.equal(code, 4401, `closed with ${code} ${reason}`);
  } finally {
    ws.end();
  }
});

test('a second connection_init: 4429', { timeout: 15000 }, async () => {
  const ws = await acknowledged();
  try {
    ws.send({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } });
    const { code, reason } = await ws.closeCode();
    assert.equal(code, 4429, `closed with ${code} ${reason}`);
  } finally {
    ws.end();
  }
});

test('a subscribe with an id already in use: 4409', { timeout: 20000 }, async () => {
  const ws = await acknowledged();
  try {
    ws.send({ id: 'same', type: 'subscribe', payload: { query: SUBSCRIPTION } });
    // myOrderUpdates stays open (even with no orders it sends nothing and never completes).
    await new Promise((resolve) => setTimeout(resolve, 300));
    ws.send({ id: 'same', type: 'subscribe', payload: { query: SUBSCRIPTION } });
    const { code, reason } = await ws.closeCode();
    assert.equal(code, 4409, `closed with ${code} ${reason}`);
  } finally {
    ws.end();
  }
});

test('a message that is not JSON: 4400', { timeout: 15000 }, async () => {
  const ws = await acknowledged();
  try {
    ws.send('this is not JSON');
    const { code, reason } = await ws.closeCode();
    assert.equal(code, 4400, `closed with ${code} ${reason}`);
  } finally {
    ws.end();
  }
});

test('a message of an unknown type: 4400', { timeout: 15000 }, async () => {
  const ws = await acknowledged();
  try {
    ws.send({ type: 'not_a_message_type', id: '1' });
    const { code, reason } = await ws.closeCode();
    assert.equal(code, 4400, `closed with ${code} ${reason}`);
  } finally {
    ws.end();
  }
});

test('a subscribe without an id or payload: 4400', { timeout: 15000 }, async () => {
  const ws = await acknowledged();
  try {
    ws.send({ type: 'subscribe' });
    const { code, reason } = await ws.closeCode();
    assert.equal(code, 4400, `closed with ${code} ${reason}`);
  } finally {
    ws.end();
  }
});

for (const [what, bearer] of [
  ['a malformed token', 'not-a-jwt'],
  ['a token with a forged signature', `${token.slice(0, token.lastIndexOf('.') + 1)}${'A'.repeat(43)}`],
]) {
  test(`connection_init with ${what}: 4403`, { timeout: 15000 }, async () => {
    const ws = await connect();
    try {
      ws.send({ type: 'connection_init', payload: { authorization: `Bearer ${bearer}` } });
      const { code, reason } = await ws.closeCode();
      assert.equal(code, 4403, `closed with ${code} ${reason}`);
    } finally {
      ws.end();
    }
  });
}

test('ping is answered with pong, with or without a payload', { timeout: 15000 }, async () => {
  const ws = await acknowledged();
  try {
    ws.send({ type: 'ping' });
    assert.equal((await ws.next()).type, 'pong');
    ws.send({ type: 'ping', payload: { n: 1 } });
    assert.equal((await ws.next()).type, 'pong');
    // The connection is still usable afterwards.
    ws.send({ id: 'q', type: 'subscribe', payload: { query: '{ me { email } }' } });
    const next = await ws.next();
    assert.equal(next.type, 'next', JSON.stringify(next));
    assert.equal(next.id, 'q');
    assert.equal((await ws.next()).type, 'complete');
  } finally {
    ws.end();
  }
});
