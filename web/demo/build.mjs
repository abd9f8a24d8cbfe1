// Bundles the demo storefront into src/demo/assets/ (checked in, so `cargo
// build` never needs npm). Run through `make demo` (npm ci + this script).
//
// Deterministic like the playground's build: same lockfile, same bytes, no
// source maps or paths. VERSION hashes the bundle and index.html references
// the assets with `?v=VERSION`, so a browser may cache them for good.
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants, gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', '..', 'src', 'demo', 'assets');
const BUNDLE = ['demo.css', 'demo.js'];

const { outputFiles } = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { demo: 'src/main.js' },
  outdir: out,
  bundle: true,
  minify: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  legalComments: 'eof',
  sourcemap: false,
  write: false,
  logLevel: 'warning',
});

const bundle = new Map(outputFiles.map((file) => [relative(out, file.path), file.contents]));
if ([...bundle.keys()].sort().join() !== BUNDLE.join()) {
  throw new Error(`esbuild produced ${[...bundle.keys()].join(', ')}; expected ${BUNDLE.join(', ')}`);
}

// The demo must run offline and must not carry this machine's paths.
for (const [name, contents] of bundle) {
  const text = Buffer.from(contents).toString('utf8');
  if (text.includes(here) || text.includes(process.env.HOME ?? '\0')) throw new Error(`${name} contains a local path`);
  const remote = text.match(/(?:url\(\s*["']?|@import\s+["']?|src=["']?)(?:https?:)?\/\/[^"')\s]+/);
  if (remote) throw new Error(`${name} loads a remote resource: ${remote[0]}`);
}

// The page is part of the hash too: its ETag derives from VERSION, so a change
// to the markup alone must change VERSION, or browsers would keep the old page.
const template = await readFile(join(here, 'index.html'), 'utf8');
const hash = createHash('sha256');
for (const name of BUNDLE) hash.update(name).update('\0').update(bundle.get(name)).update('\0');
hash.update('index.html').update('\0').update(template);
const version = hash.digest('hex').slice(0, 16);
const html = template.replaceAll('__VERSION__', version);

// gzip copies for clients that accept them (zlib writes no timestamp or name: deterministic).
const files = new Map(bundle);
for (const name of BUNDLE) files.set(`${name}.gz`, gzipSync(bundle.get(name), { level: constants.Z_BEST_COMPRESSION }));
files.set('index.html', Buffer.from(html));
files.set('VERSION', Buffer.from(version));

await mkdir(out, { recursive: true });
for (const name of [...files.keys()].sort()) {
  await writeFile(join(out, name), files.get(name));
  console.log(`${relative(process.cwd(), join(out, name))}  ${(files.get(name).length / 1024).toFixed(1)} KiB`);
}
console.log(`version ${version}`);
