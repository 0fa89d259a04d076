// Transpiles the engine component the Rust build produces (the `wasm-release`
// profile, see build_support/wasm_build.rs) into JavaScript under `gen/` with
// jco, in embedder mode (`instantiation: 'sync'`): `gen/engine.js` exports
// `instantiate(getCoreModule, imports)`, so this host supplies every import
// itself, WASI included (engine.mjs). Also takes the `default` policy's text
// from the Rust host's built-in policies into gen/default-policy.hcl (one
// definition for both hosts). Re-transpiles only when the component (or the
// built-in policies) is newer than `gen/` (or `--force`).
//
//   node build.mjs [--force] [--wasm PATH]

import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(here, '..', '..');
export const GEN_DIR = join(here, 'gen');
/** Where `host/build.rs` (through build_support/wasm_build.rs) writes the component. */
export const DEFAULT_WASM = join(
  REPO_ROOT, 'target', 'wasm', 'wasm32-wasip2', 'wasm-release', 'kvsync_component.wasm',
);
/** The file whose time stamp says when `gen/` was last written. */
const STAMP = join(GEN_DIR, 'engine.js');
/** The Rust build's built-in policies: the `default` policy's text is taken from here. */
const BUILTIN_POLICIES = join(REPO_ROOT, 'host', 'core', 'src', 'policy', 'builtin.rs');

async function mtime(path) {
  try {
    return (await stat(path)).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Whether `gen/` is missing or older than `wasm` (or the built-in policies). */
export async function stale(wasm = DEFAULT_WASM) {
  const built = await mtime(STAMP);
  const source = await mtime(wasm);
  if (source === undefined) {
    throw new Error(`no engine component at ${wasm}: build it with cargo build --release -p kvsync`);
  }
  const policies = (await mtime(BUILTIN_POLICIES)) ?? 0;
  return built === undefined || built < source || built < policies;
}

/** The text of `DEFAULT_POLICY_TEXT` in the Rust host's built-in policies. */
async function defaultPolicyText() {
  const rust = await readFile(BUILTIN_POLICIES, 'utf8');
  const m = /pub const DEFAULT_POLICY_TEXT: &str = r#"([\s\S]*?)"#;/.exec(rust);
  if (m === null) throw new Error(`no DEFAULT_POLICY_TEXT raw string in ${BUILTIN_POLICIES}`);
  return m[1];
}

/** Transpiles `wasm` into `gen/`, replacing what was there. */
export async function build(wasm = DEFAULT_WASM) {
  const { transpileBytes } = await import('@bytecodealliance/jco-transpile');
  const bytes = await readFile(wasm);
  const { files } = await transpileBytes(bytes, {
    name: 'engine',
    instantiation: 'sync',
    // Embedder mode supplies WASI explicitly (the sandboxed shim): no
    // automatic mapping to the host's filesystem, environment or network.
    wasiShim: false,
    emitTypescriptDeclarations: false,
    base64Cutoff: 0,
  });
  const policy = await defaultPolicyText();
  await rm(GEN_DIR, { recursive: true, force: true });
  await mkdir(GEN_DIR, { recursive: true });
  await writeFile(join(GEN_DIR, 'default-policy.hcl'), policy);
  for (const [name, data] of Object.entries(files)) {
    const path = join(GEN_DIR, name);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, data);
  }
  return Object.keys(files).sort();
}

async function main(argv) {
  const force = argv.includes('--force');
  const at = argv.indexOf('--wasm');
  const wasm = at >= 0 && argv[at + 1] ? resolve(argv[at + 1]) : DEFAULT_WASM;
  if (!force && !(await stale(wasm))) {
    console.log(`gen/ is up to date with ${wasm}`);
    return;
  }
  const written = await build(wasm);
  console.log(`transpiled ${wasm} into gen/: ${written.join(', ')}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`build.mjs: ${e.message}`);
    process.exit(1);
  });
}
