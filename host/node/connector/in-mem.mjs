// `in-mem`: a destination kept in the host's own memory (a kvsync extension for
// tests and demos), as the Rust host's (host/src/connectors/in_mem): objects
// keyed by destination name, then external name, gone when the host stops;
// `inspect` lists them in byte order of their names. Its config is ignored.

export class InMemory {
  kind = 'in-mem';
  /** destination name -> external name -> { value, tags } */
  #objects = new Map();

  push(dest, secret) {
    let held = this.#objects.get(dest.name);
    if (held === undefined) {
      held = new Map();
      this.#objects.set(dest.name, held);
    }
    held.set(secret.name, { value: secret.value, tags: secret.tags.map(([k, v]) => [k, v]) });
  }

  pushNew(dest, secret) {
    this.push(dest, secret);
  }

  delete(dest, name) {
    const held = this.#objects.get(dest.name);
    if (held === undefined) return;
    held.delete(name);
    if (held.size === 0) this.#objects.delete(dest.name);
  }

  inspect(dest) {
    const held = this.#objects.get(dest.name);
    if (held === undefined) return [];
    return [...held.entries()]
      .map(([name, o]) => ({ name, bytes: Buffer.from(name, 'utf8'), o }))
      .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
      .map(({ name, o }) => ({ name, value: o.value, tags: o.tags.map(([k, v]) => [k, v]) }));
  }
}
