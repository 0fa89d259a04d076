// The AWS SDK side of the `aws-sm` connector (see aws-sm.mjs), in its own
// thread. Calls, as the Rust host makes them (no read before write; the SDK's
// retries are off: the engine's are the only ones):
// - push: PutSecretValue; on ResourceNotFoundException, CreateSecret with the
//   tags, KMS key and replicas; if someone created it meanwhile
//   (ResourceExistsException), PutSecretValue again.
// - pushNew: CreateSecret first; PutSecretValue when it exists anyway.
// - delete: DeleteSecret with ForceDeleteWithoutRecovery; a missing secret
//   counts as deleted; a primary with replicas has them removed first.
// Errors: throttling, internal errors, HTTP 429 and 5xx, timeouts and
// connection failures are EXTERNAL_SERVICE_ERROR (with Retry-After when sent);
// everything else AWS refuses is CLIENT_SIDE_ERROR.
//
// Credentials: the destination's access key pair, else the SDK's default chain.
// Region: the destination's, else AWS_REGION / AWS_DEFAULT_REGION. Endpoint:
// AWS_ENDPOINT_URL_SECRETS_MANAGER, else AWS_ENDPOINT_URL, else AWS's.
// Egress: unless `disable_strict_networking`, the endpoint must be on port 80
// or 443 and resolve only to public addresses. `role_arn` (STS AssumeRole) and
// workload identity federation are not supported by this host.

import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { workerData } from 'node:worker_threads';

import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  PutSecretValueCommand,
  RemoveRegionsFromReplicationCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';

const PROVIDER = 'AWS Secrets Manager';
const ATTEMPT_TIMEOUT_MS = 10_000;
const RETRYABLE_CODES = new Set([
  'ThrottlingException', 'Throttling', 'ThrottledException', 'TooManyRequestsException',
  'RequestLimitExceeded', 'RequestThrottled', 'RequestThrottledException',
  'ProvisionedThroughputExceededException', 'SlowDown', 'InternalServiceError',
  'InternalServiceErrorException', 'InternalFailure', 'InternalError', 'ServiceUnavailable',
  'ServiceUnavailableException', 'RequestTimeout', 'RequestTimeoutException', 'IDPCommunicationError',
]);

const clientSide = (message) => ({ tag: 'client-side', val: message });
const externalService = (message, retryAfterMs) => ({
  tag: 'external-service',
  val: retryAfterMs === undefined ? { message } : { message, retryAfterMs },
});

const text = (v) => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);

function endpoint() {
  return text(process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER) ?? text(process.env.AWS_ENDPOINT_URL);
}

/** IPv4/IPv6 special-purpose ranges (loopback, private, link-local, ...). */
function specialPurpose(ip) {
  if (isIP(ip) === 4) {
    const [a, b] = ip.split('.').map(Number);
    return a === 0 || a === 10 || a === 127 || a >= 224 || (a === 100 && b >= 64 && b < 128)
      || (a === 169 && b === 254) || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168)
      || (a === 192 && b === 0) || (a === 198 && (b === 18 || b === 19));
  }
  const v = ip.toLowerCase();
  if (v.startsWith('::ffff:')) return specialPurpose(v.slice(7));
  return v === '::' || v === '::1' || /^f[cd]/.test(v) || /^fe[89ab]/.test(v) || v.startsWith('ff')
    || v.startsWith('2001:db8');
}

async function checkEgress(config, url) {
  if (config.disable_strict_networking === true || url === undefined) return;
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  if (port !== 80 && port !== 443) {
    throw clientSide(`egress refused: port ${port} is not allowed (allowed: [80, 443]); set allowed_ports or disable_strict_networking`);
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  let addrs;
  try {
    addrs = await lookup(host, { all: true });
  } catch (e) {
    throw externalService(`cannot resolve ${host}: ${e.message}`);
  }
  for (const { address } of addrs) {
    if (specialPurpose(address)) {
      throw clientSide(`egress refused: ${address} is a special-purpose address; set allowed_ipv4_addresses / allowed_ipv6_addresses or disable_strict_networking`);
    }
  }
}

const clients = new Map();

async function client(config) {
  if (text(config.identity_token_audience) !== undefined) {
    throw clientSide('workload identity federation is not supported (identity_token_audience): this server issues no identity tokens');
  }
  if (text(config.role_arn) !== undefined) {
    throw clientSide('role_arn (STS AssumeRole) is not supported by the Node.js host');
  }
  const id = text(config.access_key_id);
  const secret = text(config.secret_access_key);
  if ((id === undefined) !== (secret === undefined)) {
    throw clientSide('access_key_id and secret_access_key must be set together');
  }
  const region = text(config.region) ?? text(process.env.AWS_REGION) ?? text(process.env.AWS_DEFAULT_REGION);
  if (region === undefined) throw clientSide('no AWS region: set the destination\'s region or AWS_REGION');
  const url = endpoint();
  await checkEgress(config, url);
  const key = JSON.stringify([id, secret, region, url]);
  let c = clients.get(key);
  if (c === undefined) {
    c = new SecretsManagerClient({
      region,
      endpoint: url,
      maxAttempts: 1,
      credentials: id === undefined ? undefined : { accessKeyId: id, secretAccessKey: secret },
      requestHandler: { requestTimeout: ATTEMPT_TIMEOUT_MS, connectionTimeout: ATTEMPT_TIMEOUT_MS },
    });
    clients.set(key, c);
  }
  return c;
}

const codeOf = (e) => e?.name ?? e?.Code ?? e?.code;

function retryAfterMs(e) {
  const h = e?.$response?.headers?.['retry-after'];
  if (h === undefined) return undefined;
  const s = Number(h);
  if (Number.isFinite(s) && s >= 0) return BigInt(Math.round(s * 1000));
  const at = Date.parse(h);
  return Number.isNaN(at) ? undefined : BigInt(Math.max(0, at - Date.now()));
}

/** Maps an SDK failure to the sync status it causes (never a credential or value). */
function classify(op, e) {
  const status = e?.$metadata?.httpStatusCode;
  if (status === undefined) {
    const detail = (e?.message ?? String(e)).slice(0, 300);
    if (e?.name === 'TimeoutError' || e?.code === 'ETIMEDOUT') {
      return externalService(`${PROVIDER} ${op} timed out: ${detail}`);
    }
    if (/credential/i.test(e?.name ?? '') || /Could not load credentials/i.test(detail)) {
      return clientSide(`no usable AWS credentials for ${op}: ${detail}`);
    }
    return externalService(`${PROVIDER} could not be reached: ${detail}`);
  }
  const code = codeOf(e);
  let message = `${PROVIDER} ${op} failed: ${code ?? `HTTP ${status}`}`;
  const detail = e?.message;
  if (typeof detail === 'string' && detail.trim() !== '' && detail !== code) message += `: ${detail.slice(0, 300)}`;
  if (status === 429 || status >= 500 || RETRYABLE_CODES.has(code)) {
    return externalService(message, retryAfterMs(e));
  }
  if (code === 'InvalidRequestException' && /scheduled for deletion/i.test(detail ?? '')) {
    message += ' (restore the secret with RestoreSecret or delete it for good, then sync again)';
  }
  return clientSide(message);
}

const notFound = (e) => codeOf(e) === 'ResourceNotFoundException';

async function send(c, op, command) {
  try {
    return await c.send(command);
  } catch (e) {
    e.kvsyncOp = op;
    throw e;
  }
}

function replicas(config) {
  const r = config.replica_regions;
  if (r === undefined || r === null) return undefined;
  let entries;
  if (Array.isArray(r)) entries = r.map((region) => [String(region), '']);
  else if (typeof r === 'string') entries = r.split(',').map((s) => [s.trim(), '']).filter(([s]) => s);
  else entries = Object.entries(r).map(([k, v]) => [k, v ?? '']);
  if (entries.length === 0) return undefined;
  return entries.map(([Region, key]) => (key ? { Region, KmsKeyId: key } : { Region }));
}

async function put(c, secret) {
  await send(c, 'PutSecretValue', new PutSecretValueCommand({ SecretId: secret.name, SecretString: secret.value }));
}

async function create(c, config, secret) {
  try {
    await send(c, 'CreateSecret', new CreateSecretCommand({
      Name: secret.name,
      SecretString: secret.value,
      Tags: secret.tags.map(([Key, Value]) => ({ Key, Value })),
      KmsKeyId: text(config.kms_key_id),
      AddReplicaRegions: replicas(config),
    }));
  } catch (e) {
    if (codeOf(e) !== 'ResourceExistsException') throw e;
    await put(c, secret);
  }
}

async function deleteSecret(c, name) {
  try {
    await send(c, 'DeleteSecret', new DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true }));
  } catch (e) {
    if (!notFound(e)) throw e;
  }
}

const still = (e) => ['InvalidParameterException', 'InvalidRequestException'].includes(codeOf(e))
  && /replica/i.test(e?.message ?? '');

const ops = {
  async push(dest, secret) {
    const c = await client(dest.config);
    try {
      await put(c, secret);
      return;
    } catch (e) {
      if (!notFound(e)) throw e;
    }
    await create(c, dest.config, secret);
  },
  async pushNew(dest, secret) {
    await create(await client(dest.config), dest.config, secret);
  },
  async delete(dest, name) {
    const c = await client(dest.config);
    try {
      await deleteSecret(c, name);
      return;
    } catch (e) {
      if (!still(e)) throw e;
    }
    let described;
    try {
      described = await send(c, 'DescribeSecret', new DescribeSecretCommand({ SecretId: name }));
    } catch (e) {
      if (notFound(e)) return;
      throw e;
    }
    const regions = (described.ReplicationStatus ?? []).map((r) => r.Region).filter(Boolean);
    if (regions.length > 0) {
      try {
        await send(c, 'RemoveRegionsFromReplication', new RemoveRegionsFromReplicationCommand({
          SecretId: name, RemoveReplicaRegions: regions,
        }));
      } catch (e) {
        if (notFound(e)) return;
        throw e;
      }
    }
    await deleteSecret(c, name);
  },
};

const { port } = workerData;
port.on('message', async ({ id, op, dest, args, signal }) => {
  let reply;
  try {
    reply = { id, value: await ops[op](dest, ...args) };
  } catch (e) {
    const isSyncError = e !== null && typeof e === 'object' && typeof e.tag === 'string' && !(e instanceof Error);
    reply = { id, error: isSyncError ? e : classify(e?.kvsyncOp ?? op, e) };
  }
  port.postMessage(reply);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
});
