// The `kvsync:engine/namespaces` import (`sys/namespaces`) for a host that
// serves the root namespace only: it has one tenant, so there are no child
// namespaces to list or read, and creating one is refused (400) with the
// Rust engine's message for a host without namespaces. A call without a
// caller is refused as the Rust host refuses it.

const forbidden = (m) => ({ tag: 'forbidden', val: m });
const unsupported = { tag: 'bad-request', val: 'namespaces are not supported by this host' };

/** `context()`: the current call's `{ caller }`. */
export function namespaceImports(context) {
  const caller = () => {
    if (context().caller === undefined) throw forbidden('permission denied');
  };
  return {
    list: () => {
      caller();
      return [];
    },
    read: (_path) => {
      caller();
      return undefined;
    },
    create: (_path, _metadata) => {
      caller();
      throw unsupported;
    },
    patch: (_path, _changes) => {
      caller();
      return undefined;
    },
    delete: (_path) => {
      caller();
      return false;
    },
  };
}
