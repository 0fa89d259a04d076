// The `sync-error` variant of the `connector` import, as thrown JS values (a
// thrown `{tag, val}` is how a JS import returns `err` to the guest). Messages
// never contain credentials or secret values.

export const clientSide = (message) => ({ tag: 'client-side', val: message });
export const internal = (message) => ({ tag: 'internal', val: message });
export const deferred = (message) => ({ tag: 'deferred', val: message });
/** `retryAfterMs`: a BigInt of milliseconds, or undefined. */
export const externalService = (message, retryAfterMs) => ({
  tag: 'external-service',
  val: retryAfterMs === undefined ? { message } : { message, retryAfterMs },
});

/** Whether `e` is one of the values above (anything else is a host bug). */
export function isSyncError(e) {
  return e !== null && typeof e === 'object'
    && ['client-side', 'external-service', 'internal', 'deferred'].includes(e.tag);
}
