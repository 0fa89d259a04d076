// The HTTP front, with the same duties and answers as the Rust host's
// (host/src/http/mod.rs and error.rs): only paths below `/v1/`; the root
// namespace only; the token from `X-Vault-Token` or `Authorization: Bearer`;
// 403 without a known token except on the paths Vault serves without one
// (with Vault's `invalid token` when one was presented); a
// body limit (declared and read); the token headers never reach the engine;
// the host's own errors in Vault's `{"errors":[...]}` envelope; every response
// `cache-control: no-store`. The engine routes the request and writes every
// other body; its effects wake the sync worker.
//
// Node's HTTP parser knows a fixed list of methods (`http.METHODS`), without
// Vault's `LIST`. On a connection between requests, a request line whose method
// is a valid token the parser does not know is rewritten to `GET` before the
// parser sees it, and the request is handed to the engine with its own method
// (`LIST`, or an unknown one the engine answers 405). Pipelined requests are not
// rewritten (an unknown method pipelined after another request, or one whose
// request line arrives split before its first space, gets the parser's 400);
// Vault clients do not pipeline.

import http from 'node:http';
import net from 'node:net';
import { Duplex } from 'node:stream';

import { TrapError } from './engine.mjs';

/** Vault's default `max_request_size`: 32 MiB. */
export const DEFAULT_MAX_REQUEST_SIZE = 32 << 20;
/** How much of a rejected request's body is still read (keep-alive). */
const DRAIN_ON_REJECT = 64 << 10;
/** Paths Vault serves without a token. */
const UNAUTHENTICATED = ['sys/health', 'sys/activation-flags'];

/** Rust's `{:?}` of a plain string, close enough for messages. */
const quoted = (s) => JSON.stringify(s);

class HostError extends Error {
  constructor(status, messages) {
    super(messages.join('; '));
    this.status = status;
    this.messages = messages;
  }
}

const permissionDenied = () => new HostError(403, ['permission denied']);
/** A token was presented that is unknown (Vault's two messages). */
const invalidToken = () => new HostError(403, ['permission denied', 'invalid token']);
const payloadTooLarge = (limit) => new HostError(413, [`request body too large: the limit is ${limit} bytes`]);
const badRequest = (m) => new HostError(400, [`invalid request: ${m}`]);
const notFound = () => new HostError(404, []);

const KNOWN_METHODS = new Set(http.METHODS);
/** An HTTP method token (RFC 9110 `token`), at most 32 characters. */
const METHOD_TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}$/;

/** A socket whose request lines with methods Node does not know reach the parser as `GET`. */
class MethodConnection extends Duplex {
  #socket;
  /** No request in progress: the next bytes start a request line. */
  idle = true;
  /** The method of the request being parsed, when it was rewritten. */
  method = undefined;

  constructor(socket) {
    super();
    this.#socket = socket;
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = socket.remotePort;
    socket.on('data', (chunk) => {
      let data = chunk;
      const space = this.idle ? data.indexOf(0x20) : -1;
      if (space > 0) {
        const method = data.subarray(0, space).toString('latin1');
        if (METHOD_TOKEN.test(method) && !KNOWN_METHODS.has(method)) {
          data = Buffer.concat([Buffer.from('GET', 'latin1'), data.subarray(space)]);
          this.method = method;
        }
      }
      this.idle = false;
      if (!this.push(data)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (e) => this.destroy(e));
    socket.on('close', () => this.destroy());
  }

  _read() {
    this.#socket.resume();
  }

  _write(chunk, encoding, callback) {
    this.#socket.write(chunk, encoding, callback);
  }

  _final(callback) {
    this.#socket.end(callback);
  }

  _destroy(err, callback) {
    this.#socket.destroy(err ?? undefined);
    callback(err);
  }

  setTimeout(ms, callback) {
    this.#socket.setTimeout(ms, callback);
    return this;
  }

  setNoDelay(v) {
    this.#socket.setNoDelay(v);
    return this;
  }

  setKeepAlive(...args) {
    this.#socket.setKeepAlive(...args);
    return this;
  }
}

/** The request's token: `X-Vault-Token`, else `Authorization: Bearer`; an empty one is none. */
function tokenOf(req) {
  let t = req.headers['x-vault-token'];
  if (typeof t !== 'string') {
    const auth = req.headers.authorization;
    const scheme = typeof auth === 'string' ? ['Bearer ', 'bearer '].find((s) => auth.startsWith(s)) : undefined;
    t = scheme === undefined ? undefined : auth.slice(scheme.length);
  }
  t = t?.trim();
  return t === '' ? undefined : t;
}

/** The body, at most `limit` bytes (more: `payloadTooLarge`, or undefined when `drain`). */
function readBody(req, limit, drain = false) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    let over = false;
    req.on('data', (c) => {
      if (over) return;
      size += c.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        if (drain) resolve(undefined);
        else reject(payloadTooLarge(limit));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks));
    });
    req.on('error', (e) => reject(badRequest(`cannot read the request body: ${e.message}`)));
  });
}

/** [name, value] pairs as sent, names in lower case, without the token headers. */
function headerPairs(req) {
  const out = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i].toLowerCase();
    if (name === 'x-vault-token' || name === 'authorization') continue;
    out.push([name, req.rawHeaders[i + 1]]);
  }
  return out;
}

/**
 * `engine`: an Engine; `callerOf(token)`: the WIT caller of a token, or
 * undefined; `onEffects(effects)`: called when a request made sync work due.
 */
export function createServer({ engine, callerOf, onEffects, maxRequestSize = DEFAULT_MAX_REQUEST_SIZE, log = console }) {
  async function respond(req, method) {
    const raw = req.url.split('?')[0];
    if (!raw.startsWith('/v1/')) throw notFound();
    const path = raw.slice('/v1/'.length);
    const q = req.url.indexOf('?');
    const query = q < 0 ? '' : req.url.slice(q + 1);

    const ns = req.headers['x-vault-namespace'];
    if (typeof ns === 'string') {
      const trimmed = ns.replace(/^\/+|\/+$/g, '');
      if (trimmed !== '' && trimmed !== 'root') {
        throw badRequest(`namespace ${quoted(trimmed)} does not exist`);
      }
    }

    const token = tokenOf(req);
    const caller = token === undefined ? undefined : callerOf(token);
    const open = UNAUTHENTICATED.includes(path.replace(/^\/+|\/+$/g, ''));
    if (caller === undefined && !open) {
      // Read a small body anyway so the connection stays usable.
      await readBody(req, DRAIN_ON_REJECT, true);
      throw token === undefined ? permissionDenied() : invalidToken();
    }

    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxRequestSize) throw payloadTooLarge(maxRequestSize);
    const headers = headerPairs(req);
    const body = await readBody(req, maxRequestSize);

    let outcome;
    try {
      outcome = engine.handle({ method, path, query, headers, body: new Uint8Array(body), caller });
    } catch (e) {
      if (e instanceof TrapError) {
        log.error(`the engine trapped; the request got a 500: ${e.cause?.message ?? e.cause}`);
        throw new HostError(500, ['internal error']);
      }
      throw e;
    }
    // The work is committed whatever happens to the response.
    if (outcome.effects.syncDue.tag !== 'none') onEffects(outcome.effects);
    return outcome.response;
  }

  function send(res, status, headers, body) {
    const merged = new Map();
    for (const [name, value] of headers) merged.set(name.toLowerCase(), value);
    merged.set('cache-control', 'no-store');
    merged.set('content-length', String(body.length));
    res.writeHead(status, Object.fromEntries(merged));
    res.end(body);
  }

  const server = http.createServer(async (req, res) => {
    const conn = req.socket;
    const method = conn.method ?? req.method;
    conn.method = undefined;
    res.on('finish', () => {
      conn.idle = true;
    });
    try {
      const out = await respond(req, method);
      send(res, out.status, out.headers, Buffer.from(out.body));
    } catch (e) {
      const err = e instanceof HostError ? e : new HostError(500, ['internal error']);
      if (!(e instanceof HostError)) log.error(`request failed: ${e?.stack ?? e}`);
      send(res, err.status, [['content-type', 'application/json']], Buffer.from(JSON.stringify({ errors: err.messages })));
    }
  });
  server.keepAliveTimeout = 65_000;

  const front = net.createServer((socket) => {
    socket.setNoDelay(true);
    server.emit('connection', new MethodConnection(socket));
  });
  return {
    listen(host, port) {
      return new Promise((resolve, reject) => {
        front.once('error', reject);
        front.listen(port, host, () => resolve(front.address()));
      });
    },
    /** Stops accepting, lets in-flight requests finish (bounded by `graceMs`). */
    close(graceMs = 10_000) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, graceMs);
        timer.unref();
        front.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      });
    },
  };
}
