// The `kvsync:engine/policies` import: an in-memory policy store with the Rust
// host's semantics (host/src/auth/policies.rs): names trimmed and lower-cased;
// `root` reads with an empty text and can be neither written nor deleted;
// `default` (the built-in text the Rust build defines, extracted by build.mjs)
// exists from the start and can be edited, not deleted; a text that is
// standard base64 is stored decoded; `list` is sorted with `root` last. Every
// call needs a caller (a sync run has none: `forbidden`).
//
// Unlike the Rust host, this store does not parse HCL: any non-empty HCL text
// is accepted, and a JSON text only has to be a JSON object. A host with a
// single root token never evaluates a policy (root is granted everything), so
// capabilities are `["root"]` for the root token and an error for any other.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const DEFAULT_POLICY_FILE = join(dirname(fileURLToPath(import.meta.url)), 'gen', 'default-policy.hcl');

const badRequest = (m) => ({ tag: 'bad-request', val: m });
const forbidden = (m) => ({ tag: 'forbidden', val: m });
const quoted = (s) => JSON.stringify(s);
const sanitize = (name) => name.trim().toLowerCase();
const byBytes = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Standard base64 (canonical padding; line breaks ignored) of UTF-8 text, decoded; else undefined. */
function decodeBase64(text) {
  const compact = text.replace(/[\r\n]/g, '');
  if (compact.length === 0 || compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) return undefined;
  const bytes = Buffer.from(compact, 'base64');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * `context()`: the current call's `{ caller }`; `root`: the WIT caller of the
 * host's single root token (undefined: no token exists).
 */
export function policyImports(context, root) {
  const store = new Map([['default', readFileSync(DEFAULT_POLICY_FILE, 'utf8')]]);

  const needCaller = () => {
    if (context().caller === undefined) throw forbidden('permission denied');
  };

  return {
    read: (name) => {
      needCaller();
      const n = sanitize(name);
      if (n === 'root') return { name: n, text: '' };
      if (n === '' || n.includes('/') || !store.has(n)) return undefined;
      return { name: n, text: store.get(n) };
    },
    write: (name, text) => {
      needCaller();
      const n = sanitize(name);
      if (n === '') throw badRequest('policy name must be provided in the URL');
      if (n === 'root') throw badRequest(`cannot update ${quoted(n)} policy`);
      if (n.includes('/')) throw badRequest(`invalid policy name ${quoted(n)}: a name cannot contain "/"`);
      if (text.trim() === '') throw badRequest("'policy' parameter not supplied or empty");
      const doc = decodeBase64(text) ?? text;
      if (doc.trim().startsWith('{')) {
        let parsed;
        try {
          parsed = JSON.parse(doc);
        } catch (e) {
          throw badRequest(`failed to parse policy: ${e.message}`);
        }
        if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
          throw badRequest('failed to parse policy: a JSON policy is an object');
        }
      }
      store.set(n, doc);
    },
    delete: (name) => {
      needCaller();
      const n = sanitize(name);
      if (n === 'root') throw badRequest(`cannot delete ${quoted(n)} policy`);
      if (n === 'default') throw badRequest('cannot delete default policy');
      store.delete(n);
    },
    list: () => {
      needCaller();
      return [...[...store.keys()].sort(byBytes), 'root'];
    },
    capabilities: (subject, paths) => {
      needCaller();
      let isRoot;
      if (subject.tag === 'caller') {
        isRoot = context().caller.policies.includes('root');
      } else if (subject.tag === 'token') {
        if (root === undefined || subject.val !== root.token) throw badRequest('invalid token');
        isRoot = true;
      } else {
        if (root === undefined || subject.val !== root.accessor) throw badRequest('invalid accessor');
        isRoot = true;
      }
      return paths.map(() => (isRoot ? ['root'] : ['deny']));
    },
  };
}
