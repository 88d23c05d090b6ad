// Runs bench-micro.wasm (the filter's verification path, wasm32-wasip1) in V8 under Node's WASI:
//   node bench/micro.mjs <bench-micro.wasm> <cases.json>
// The cases file's directory is preopened as /data; a third argument is passed on (warmup).
// The filter crate brings its proxy-wasm adapter along, so the module imports proxy_* host
// calls it never makes here: they are stubbed to trap.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import path from 'node:path';

const [wasmPath, casesPath, ...rest] = process.argv.slice(2);
if (!wasmPath || !casesPath) {
  console.error('usage: node micro.mjs <bench-micro.wasm> <cases.json>');
  process.exit(2);
}
const dir = path.dirname(path.resolve(casesPath));
const wasi = new WASI({
  version: 'preview1',
  args: ['bench-micro', `/data/${path.basename(casesPath)}`, ...rest],
  preopens: { '/data': dir },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(wasmPath));
const imports = { wasi_snapshot_preview1: wasi.wasiImport };
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module === 'wasi_snapshot_preview1' || imp.kind !== 'function') continue;
  imports[imp.module] ??= {};
  imports[imp.module][imp.name] = () => {
    throw new Error(`unexpected host call ${imp.module}.${imp.name}`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
// The filter crate (an rlib here) still exports the proxy-wasm `_initialize`, which Node's
// WASI refuses next to `_start`: hand it only what a command needs.
const { _start, memory } = instance.exports;
const code = wasi.start({ exports: { _start, memory } });
process.exitCode = code;
