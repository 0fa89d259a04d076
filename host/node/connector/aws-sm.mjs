// `aws-sm`: AWS Secrets Manager through the AWS SDK for JavaScript v3, made
// synchronous for the component: the SDK runs in a worker thread
// (aws-sm-worker.mjs); each call posts its request there and blocks on
// `Atomics.wait` over a SharedArrayBuffer until the worker signals its answer,
// which is then read with `receiveMessageOnPort`. The wait is bounded: by the
// inline bound within an API request (then `deferred`), else by the per-call
// timeout (then EXTERNAL_SERVICE_ERROR, as the Rust host's registry does). An
// answer that comes after its wait ended is discarded.
//
// The calls, their order and the error classes are the Rust host's
// (host/src/connectors/aws_sm/mod.rs): see aws-sm-worker.mjs. Name, value and
// tag limits are checked here, before any call.

import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads';

import { clientSide, externalService, internal } from './errors.mjs';
import { TimeoutError } from './index.mjs';

const PROVIDER = 'AWS Secrets Manager';
const MAX_NAME = 512;
const MAX_VALUE = 65_536;
const MAX_TAGS = 50;
const MAX_TAG_KEY = 128;
const MAX_TAG_VALUE = 256;
/** The Rust host's default bound on one provider call. */
export const DEFAULT_TIMEOUT_MS = 10_000;

const chars = (s) => [...s].length;
const quoted = (s) => JSON.stringify(s);

function checkName(name) {
  const len = chars(name);
  if (len === 0 || len > MAX_NAME) {
    throw clientSide(`invalid ${PROVIDER} secret name: it is ${len} characters long; names have 1 to ${MAX_NAME}`);
  }
  const bad = [...name].find((c) => !/^[A-Za-z0-9/_+=.@-]$/.test(c));
  if (bad !== undefined) {
    throw clientSide(
      `invalid ${PROVIDER} secret name ${quoted(name)}: '${bad}' is not allowed (only ASCII letters, digits and /_+=.@-)`,
    );
  }
}

function checkSecret(secret) {
  checkName(secret.name);
  const bytes = Buffer.byteLength(secret.value, 'utf8');
  if (bytes === 0) throw clientSide(`${PROVIDER} does not store an empty secret value`);
  if (bytes > MAX_VALUE) {
    throw clientSide(`the secret value is ${bytes} bytes; ${PROVIDER} stores at most ${MAX_VALUE}`);
  }
  if (secret.tags.length > MAX_TAGS) {
    throw clientSide(`${secret.tags.length} tags: ${PROVIDER} allows at most ${MAX_TAGS} per secret`);
  }
  for (const [k, v] of secret.tags) {
    if (chars(k) === 0 || chars(k) > MAX_TAG_KEY) {
      throw clientSide(`tag key ${quoted(k)}: ${PROVIDER} tag keys have 1 to ${MAX_TAG_KEY} characters`);
    }
    if (k.toLowerCase().startsWith('aws:')) {
      throw clientSide(`tag key ${quoted(k)}: the aws: prefix is reserved by AWS`);
    }
    if (chars(v) > MAX_TAG_VALUE) {
      throw clientSide(`the value of tag ${quoted(k)} is longer than ${MAX_TAG_VALUE} characters`);
    }
  }
}

export class AwsSecretsManager {
  kind = 'aws-sm';
  #worker;
  #port;
  #seq = 0;
  #timeoutMs;

  constructor({ timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    this.#timeoutMs = timeoutMs;
    const { port1, port2 } = new MessageChannel();
    // Started now: loading the SDK takes a while, and must not count
    // against the first call's bound.
    this.#worker = new Worker(new URL('./aws-sm-worker.mjs', import.meta.url), {
      workerData: { port: port2 },
      transferList: [port2],
    });
    this.#worker.unref();
    this.#worker.on('error', (e) => console.error(`aws-sm worker failed: ${e.message}`));
    this.#port = port1;
    this.#port.unref();
  }

  close() {
    this.#port.close();
    return this.#worker.terminate();
  }

  #call(op, dest, args, inlineBoundMs) {
    const signal = new Int32Array(new SharedArrayBuffer(4));
    this.#seq += 1;
    const id = this.#seq;
    this.#port.postMessage({ id, op, dest, args, signal });
    const bound = Math.min(inlineBoundMs ?? this.#timeoutMs, this.#timeoutMs);
    if (Atomics.wait(signal, 0, 0, bound) === 'timed-out') {
      throw new TimeoutError(externalService(`timed out after ${this.#timeoutMs / 1000}s`));
    }
    for (;;) {
      const got = receiveMessageOnPort(this.#port);
      if (got === undefined) throw internal('the AWS client thread signalled without an answer');
      if (got.message.id !== id) continue; // the late answer of a call that timed out
      if (got.message.error !== undefined) throw got.message.error;
      return got.message.value;
    }
  }

  push(dest, secret, inlineBoundMs) {
    checkSecret(secret);
    this.#call('push', dest, [secret], inlineBoundMs);
  }

  pushNew(dest, secret, inlineBoundMs) {
    checkSecret(secret);
    this.#call('pushNew', dest, [secret], inlineBoundMs);
  }

  delete(dest, name, inlineBoundMs) {
    // A name AWS cannot hold cannot exist there.
    try {
      checkName(name);
    } catch {
      return;
    }
    this.#call('delete', dest, [name], inlineBoundMs);
  }
}
