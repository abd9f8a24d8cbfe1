// ordercast's GraphiQL: bundled by build.mjs into src/playground/assets/ and
// served by ordercast itself at `/`, so the playground needs no CDN.
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { createClient } from 'graphql-ws';
import 'graphiql/style.css';

const DEFAULT_QUERY = `# ordercast GraphiQL, served by ordercast (works offline).
#
# \`make run\` prints a link that opens this playground
# signed in as alice@example.com. Another customer:
#
# 1. Mint a development token:
#      ordercast token --customer bob@example.com
#    or, in a checkout:
#      cargo run -q -- token --customer bob@example.com
# 2. Paste it into the Headers tab below:
#      {"Authorization": "Bearer <token>"}
#    (or open this page as /#token=<token>).
#    Subscriptions use it too: the WebSocket sends it in
#    connection_init as {"authorization": "Bearer <token>"}.
# 3. Run with Ctrl-Enter or the run button.

query MeAndProducts {
  me {
    id
    email
    displayName
  }
  products(first: 5) {
    edges {
      node {
        id
        sku
        name
        priceCents
        available
      }
    }
  }
}

# A mutation: start an order, then add a product to it
# (ids from above; put them in the Variables tab).
#
# mutation CreateOrder {
#   createOrder { id status version }
# }
#
# mutation AddItem($orderId: ID!, $productId: ID!) {
#   addItem(orderId: $orderId, productId: $productId,
#           quantity: 2) {
#     version totalCents items { quantity product { name } }
#   }
# }
#
# A subscription (over WebSocket): live updates of one
# order. First comes a SNAPSHOT; change the order from
# another tab and watch each change arrive.
#
# subscription OrderUpdates($orderId: ID!) {
#   orderUpdates(orderId: $orderId) {
#     version change resync
#     order { status totalCents items { quantity } }
#   }
# }
`;

const DEFAULT_HEADERS = `{
  "Authorization": "Bearer <paste a token from: ordercast token --customer alice@example.com>"
}`;

/** The token of a `#token=<JWT>` link (which `make run` prints), or null. */
const linkToken = () => new URLSearchParams(window.location.hash.slice(1)).get('token');

/**
 * The headers of a link's token, or undefined. A fragment never reaches the
 * server; it is taken off the address bar at once, so the token stays out of
 * history and bookmarks.
 */
function headersFromLink() {
  const token = linkToken();
  if (token === null) return undefined;
  window.history.replaceState(window.history.state, '', window.location.pathname + window.location.search);
  return token ? JSON.stringify({ Authorization: `Bearer ${token}` }, null, 2) : undefined;
}

// Overrides whatever headers GraphiQL kept in localStorage; without a link,
// the persisted headers or DEFAULT_HEADERS, as before.
const linkHeaders = headersFromLink();

// A link pasted into an open playground only changes the fragment (no new
// load): reload, so it is taken like one opened afresh.
window.addEventListener('hashchange', () => {
  if (linkToken() !== null) window.location.reload();
});

const httpUrl = new URL('/graphql', window.location.href).href;
const wsUrl = httpUrl.replace(/^http/, 'ws');

/** The Authorization value of the headers editor, whatever its case. */
function authorizationOf(headers) {
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (name.toLowerCase() === 'authorization' && value != null) return String(value);
  }
  return undefined;
}

// The headers editor's Authorization, as of the latest operation. The
// WebSocket reads it when it connects (connection_init), and a new token
// gets a new connection, so a subscription always runs as the caller the
// headers editor names.
let authorization;
let ws = null;

function wsClient() {
  if (ws && ws.authorization === authorization) return ws.client;
  ws?.client.dispose();
  const client = createClient({
    url: wsUrl,
    lazy: true,
    retryAttempts: 0,
    connectionParams: () => (authorization === undefined ? {} : { authorization }),
  });
  ws = { authorization, client };
  return client;
}

const fetchers = new Map();

/** createGraphiQLFetcher for HTTP (headers editor sent as is) and graphql-ws. */
function fetcher(params, opts) {
  authorization = authorizationOf(opts?.headers);
  const client = wsClient();
  let inner = fetchers.get(client);
  if (!inner) {
    fetchers.clear();
    inner = createGraphiQLFetcher({ url: httpUrl, wsClient: client, enableIncrementalDelivery: false });
    fetchers.set(client, inner);
  }
  return inner(params, opts);
}

createRoot(document.getElementById('graphiql')).render(
  <GraphiQL
    fetcher={fetcher}
    defaultQuery={DEFAULT_QUERY}
    defaultHeaders={DEFAULT_HEADERS}
    headers={linkHeaders}
    defaultEditorToolsVisibility="headers"
    isHeadersEditorEnabled
  >
    <GraphiQL.Logo>ordercast</GraphiQL.Logo>
  </GraphiQL>,
);
