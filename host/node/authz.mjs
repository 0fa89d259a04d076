// The `kvsync:engine/authz` import for a host with a single root token: the
// caller of the current request is root (every operation, capability and
// mount: the root policy grants everything, `sudo` included) or absent (a
// sync run, an unauthenticated path: nothing), as the Rust host's compiled
// ACL answers for those callers.

export const ROOT_POLICY = 'root';

/** `context()` returns the current call's `{ caller }`. */
export function authzImports(context) {
  const root = () => context().caller?.policies.includes(ROOT_POLICY) ?? false;
  return {
    authorize: (_operation, _path, _sudo) => root(),
    allowed: (_capability, _path) => root(),
    canReach: (_prefix) => root(),
  };
}
