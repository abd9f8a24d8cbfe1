// The GraphQL over HTTP spec, checked by the graphql-http package's own server
// audits (what its README tells servers to run): every MUST and every SHOULD.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { serverAudits } from 'graphql-http';

import { httpUrl } from '../lib/ordercast.mjs';

for (const audit of serverAudits({ url: httpUrl })) {
  test(`graphql-http ${audit.id}: ${audit.name}`, { timeout: 20000 }, async () => {
    const result = await audit.fn();
    if (result.status === 'ok') return;
    let body = '';
    try {
      body = await result.response.text();
    } catch {
      // The body was read by the audit already.
    }
    assert.fail(`${result.status}: ${result.reason} (HTTP ${result.response?.status}) ${body}`.trim());
  });
}
