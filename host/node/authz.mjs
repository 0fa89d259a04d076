// The `kvsync:engine/authz` import for a host with a single root token: the
// caller of the current request is root (every capability) or absent (a sync
// run, an unauthenticated path: nothing), as `crate::auth::allowed` answers
// for those callers in the Rust host.

export const ROOT_POLICY = 'root';

/** `context()` returns the current call's `{ caller }`. */
export function authzImports(context) {
  return {
    allowed: (_capability, _path) => context().caller?.policies.includes(ROOT_POLICY) ?? false,
  };
}
