// The Node half of the parity test: replays request fixtures
// (tests/parity/*.json) through this host's engine with empty in-memory
// storage, the in-memory connector and deterministic WASI, and prints one line
// per step, exactly as the Rust host's `kvsync-replay` does (the fixture format
// and the output lines are described in tests/src/parity.rs).
//
//   node replay.mjs FIXTURE.json...

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

import { Connectors } from './connector/index.mjs';
import { InMemory } from './connector/in-mem.mjs';
import { DEFAULT_START_NS, DeterministicWasi } from './deterministic.mjs';
import { Engine } from './engine.mjs';
import { MemStorage } from './storage.mjs';

/** The same as `SETTINGS` in tests/src/parity.rs. */
const SETTINGS = { backoffBaseMs: 1000n, backoffCapMs: 60_000n, coalesceWindowMs: 0n };

/** The same as `parity_root()` in tests/src/parity.rs. */
const PARITY_ROOT = {
  token: 'parity-root-token',
  accessor: 'parityRootAccessor000000',
  displayName: 'root',
  policies: ['root'],
  path: 'auth/token/root',
  creationTime: DEFAULT_START_NS / 1_000_000_000n,
};

/** JSON with object keys sorted by their UTF-8 bytes, as serde_json writes a `Value`. */
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

function request(r) {
  let body = new Uint8Array();
  if (r.body !== undefined) body = new TextEncoder().encode(canonical(r.body));
  else if (typeof r.body_text === 'string') body = new TextEncoder().encode(r.body_text);
  let headers = [];
  if (r.headers !== undefined) headers = r.headers.map(([k, v]) => [k, v]);
  else if (r.body !== undefined) headers = [['content-type', 'application/json']];
  let caller;
  if (r.caller === undefined || r.caller === 'root') caller = PARITY_ROOT;
  else if (r.caller === null) caller = undefined;
  else throw new Error(`unknown caller ${JSON.stringify(r.caller)}`);
  return { method: r.method ?? '', path: r.path ?? '', query: r.query ?? '', headers, body, caller };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function responseLine(step, outcome) {
  const { response, effects } = outcome;
  let syncDue;
  if (effects.syncDue.tag === 'none') syncDue = 'none';
  else if (effects.syncDue.tag === 'all') syncDue = 'all';
  else syncDue = effects.syncDue.val;
  const line = {};
  try {
    line.body = utf8.decode(response.body);
  } catch {
    line.body_hex = Buffer.from(response.body).toString('hex');
  }
  line.headers = response.headers;
  line.status = response.status;
  line.step = step;
  line.sync_due = syncDue;
  return canonical(line);
}

async function replay(fixture, out) {
  const deterministic = new DeterministicWasi();
  const engine = await Engine.create({
    storage: new MemStorage(),
    connectors: new Connectors([new InMemory()]),
    deterministic,
  });
  const steps = fixture.steps;
  if (!Array.isArray(steps)) throw new Error('a fixture has a "steps" list');
  for (const [n, step] of steps.entries()) {
    let line;
    try {
      if (step.request !== undefined) {
        line = responseLine(n, engine.handle(request(step.request)));
      } else if (step.sync_run !== undefined) {
        const s = step.sync_run;
        const r = engine.runSync(s.shard ?? 0, s.shards ?? 1, s.limit ?? 256, SETTINGS);
        line = canonical({
          report: {
            failed: r.failed,
            next_due_ms: r.nextDueMs === undefined ? null : Number(r.nextDueMs),
            processed: r.processed,
          },
          step: n,
        });
      } else if (step.reconcile !== undefined) {
        line = canonical({ queued: engine.reconcile(), step: n });
      } else if (typeof step.advance_ms === 'number') {
        deterministic.advanceMs(step.advance_ms);
        continue;
      } else {
        throw new Error(`step ${n} is none of request, sync_run, reconcile, advance_ms`);
      }
    } catch (e) {
      if (e?.message !== 'the engine trapped') throw e;
      line = canonical({ error: 'trap', step: n });
    }
    out.push(line);
  }
}

async function main(files) {
  if (files.length === 0) {
    console.error('usage: node replay.mjs FIXTURE.json...');
    process.exit(2);
  }
  const out = [];
  for (const file of files) {
    out.push(`# ${basename(file)}`);
    await replay(JSON.parse(readFileSync(file, 'utf8')), out);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

main(process.argv.slice(2)).catch((e) => {
  console.error(`replay.mjs: ${e.stack ?? e}`);
  process.exit(1);
});
