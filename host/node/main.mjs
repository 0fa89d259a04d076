// The Node.js host of the kvsync engine, in dev mode: in-memory storage, a
// single root token, KV-v2 mounted at `secret/` at start (as `kvsync server
// --dev`), the `in-mem` and `aws-sm` destination types, the sync worker.
//
//   node main.mjs --listen 127.0.0.1:8200 --dev-root-token-id TOKEN
//
// SIGTERM / SIGINT stop it cleanly: no new connections, in-flight requests
// finish (bounded), the sync worker and the AWS client thread stop.

import { randomBytes } from 'node:crypto';

import { build, stale } from './build.mjs';
import { Connectors } from './connector/index.mjs';
import { InMemory } from './connector/in-mem.mjs';
import { AwsSecretsManager } from './connector/aws-sm.mjs';
import { Engine } from './engine.mjs';
import { createServer } from './http.mjs';
import { MemStorage } from './storage.mjs';
import { SyncWorker } from './worker.mjs';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** `n` characters of [0-9A-Za-z], uniformly (rejection sampling). */
function randomId(n) {
  let out = '';
  while (out.length < n) {
    for (const b of randomBytes(64)) {
      if (out.length < n && b < 248) out += ALPHABET[b % 62];
    }
  }
  return out;
}

function parseArgs(argv) {
  const args = { listen: '127.0.0.1:8200', rootToken: undefined };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => inline ?? argv[++i];
    if (flag === '--listen') args.listen = value();
    else if (flag === '--dev-root-token-id') args.rootToken = value();
    else throw new Error(`unknown argument ${JSON.stringify(argv[i])} (flags: --listen ADDR, --dev-root-token-id TOKEN)`);
  }
  const at = args.listen.lastIndexOf(':');
  const port = Number(args.listen.slice(at + 1));
  if (at < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid listen address ${JSON.stringify(args.listen)}`);
  }
  args.host = args.listen.slice(0, at).replace(/^\[|\]$/g, '');
  args.port = port;
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (await stale()) await build();

  const rootToken = args.rootToken ?? `hvs.${randomId(24)}`;
  const root = {
    token: rootToken,
    accessor: randomId(24),
    displayName: 'root',
    policies: ['root'],
    path: 'auth/token/root',
    creationTime: BigInt(Math.floor(Date.now() / 1000)),
  };
  const aws = new AwsSecretsManager();
  const engine = await Engine.create({
    storage: new MemStorage(),
    connectors: new Connectors([new InMemory(), aws]),
    root,
  });

  const mount = engine.handle({
    method: 'POST',
    path: 'sys/mounts/secret',
    query: '',
    headers: [['content-type', 'application/json']],
    body: new TextEncoder().encode('{"type":"kv","options":{"version":"2"},"description":"key/value secret storage"}'),
    caller: root,
  });
  if (mount.response.status >= 300) {
    throw new Error(`cannot mount secret/: ${mount.response.status} ${Buffer.from(mount.response.body)}`);
  }

  const worker = new SyncWorker(engine);
  const server = createServer({
    engine,
    callerOf: (token) => (token === rootToken ? root : undefined),
    onEffects: () => worker.wake(),
  });
  const addr = await server.listen(args.host, args.port);
  worker.start();
  const shown = addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
  process.stdout.write([
    '==> kvsync (Node.js host) started! Log data will stream in below:',
    '',
    'WARNING! dev mode is enabled! This host runs entirely in-memory and has a',
    'single root token; every secret is lost when it stops.',
    '',
    `Api Address: http://${shown}`,
    `Root Token: ${rootToken}`,
    '',
  ].join('\n') + '\n');

  let stopping = false;
  const stop = async (signal) => {
    if (stopping) return;
    stopping = true;
    console.error(`${signal}: stopping`);
    worker.stop();
    await server.close();
    aws.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e) => {
  console.error(`kvsync-node: ${e.message}`);
  process.exit(1);
});
