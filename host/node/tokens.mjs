// The `kvsync:engine/tokens` import for a host with a single root token
// (identity is the embedder's): the root token is the only token there is.
// Lookups of it answer what the Rust host's token store answers for a root
// token (orphan, no TTL, a lease that never expires and is not renewable);
// any other token or accessor does not exist. Creating tokens is refused, and
// so is revoking the root token (the host would be left without one).

const badRequest = (m) => ({ tag: 'bad-request', val: m });
const forbidden = (m) => ({ tag: 'forbidden', val: m });

/**
 * `root`: the WIT caller of the root token (undefined: the host has no token
 * at all); `context()`: the current call's `{ caller }`.
 */
export function tokenImports(context, root) {
  const info = (byToken) => ({
    id: byToken ? root.token : '',
    accessor: root.accessor,
    policies: [...root.policies],
    path: root.path,
    meta: undefined,
    displayName: root.displayName,
    numUses: 0n,
    orphan: true,
    creationTime: root.creationTime,
    creationTtl: 0n,
    explicitMaxTtl: 0n,
    period: 0n,
    lease: {
      issueTime: root.creationTime * 1_000_000_000n,
      expireTime: undefined,
      lastRenewalTime: undefined,
      renewable: false,
      ttl: 0n,
    },
    namespacePath: '',
  });

  /** The root token's info when `which` names it, else undefined. */
  function find(which) {
    if (root === undefined) return undefined;
    switch (which.tag) {
      case 'caller':
        return context().caller?.token === root.token ? info(true) : undefined;
      case 'token':
        return which.val === root.token ? info(true) : undefined;
      case 'accessor':
        return which.val === root.accessor ? info(false) : undefined;
      default:
        return undefined;
    }
  }

  return {
    create: (_req) => {
      throw forbidden('this host has a single root token: it cannot create tokens');
    },
    lookup: (which) => find(which),
    renew: (which, _increment) => {
      if (find(which) === undefined) return undefined;
      throw badRequest('lease is not renewable');
    },
    revoke: (which) => {
      if (find(which) === undefined) return false;
      throw forbidden('this host has a single root token: it cannot be revoked');
    },
    revokeOrphan: (token) => {
      if (root === undefined || token !== root.token) return false;
      throw forbidden('this host has a single root token: it cannot be revoked');
    },
    listAccessors: () => (root === undefined ? [] : [root.accessor]),
    tidy: () => undefined,
  };
}
