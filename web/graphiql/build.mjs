// Bundles GraphiQL into src/playground/assets/ (checked in, so `cargo build`
// never needs npm). Run through `make playground` (npm ci + this script).
//
// The output is deterministic: same lockfile, same bytes. No timestamps, no
// absolute paths, no source maps. VERSION is a hash of the bundle and the page;
// index.html references the assets with `?v=VERSION`, so they can be cached for
// good.
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { constants, gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', '..', 'src', 'playground', 'assets');

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { graphiql: 'src/main.jsx' },
  outdir: out,
  bundle: true,
  minify: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  // Fonts and images stay inlined as data: URLs (graphiql's CSS already does so).
  loader: { '.woff': 'dataurl', '.woff2': 'dataurl', '.ttf': 'dataurl', '.svg': 'dataurl', '.png': 'dataurl' },
  legalComments: 'eof',
  sourcemap: false,
  metafile: true,
  write: false,
  logLevel: 'warning',
});

const files = new Map();
for (const file of result.outputFiles) files.set(relative(out, file.path), file.contents);
const expected = ['graphiql.css', 'graphiql.js'];
const names = [...files.keys()].sort();
if (names.join() !== expected.join()) {
  throw new Error(`esbuild produced ${names.join(', ')}; expected exactly ${expected.join(', ')}`);
}

// Precompressed copies, served to clients that accept gzip (zlib's gzip
// header carries no timestamp or file name, so these are deterministic too).
const gzipped = new Map();
for (const name of expected) gzipped.set(`${name}.gz`, gzipSync(files.get(name), { level: constants.Z_BEST_COMPRESSION }));

// Guards: the playground must work offline and must not leak this machine's paths.
for (const [name, contents] of files) {
  const text = Buffer.from(contents).toString('utf8');
  if (text.includes(here) || text.includes(process.env.HOME ?? '\0')) {
    throw new Error(`${name} contains an absolute path of this machine`);
  }
  const remote = text.match(/(?:url\(\s*["']?|@import\s+["']?|src=["']?)(?:https?:)?\/\/[^"')\s]+/);
  if (remote) throw new Error(`${name} loads a remote resource: ${remote[0]}`);
}

// The page is part of the hash too: its ETag derives from VERSION, so a change
// to the markup alone must change VERSION, or browsers would keep the old page.
const template = await readFile(join(here, 'index.html'), 'utf8');
const hash = createHash('sha256');
for (const name of expected) hash.update(name).update('\0').update(files.get(name)).update('\0');
hash.update('index.html').update('\0').update(template);
const version = hash.digest('hex').slice(0, 16);

const html = template.replaceAll('__VERSION__', version);

await mkdir(out, { recursive: true });
for (const [name, contents] of [...files, ...gzipped]) await writeFile(join(out, name), contents);
await writeFile(join(out, 'index.html'), html);
await writeFile(join(out, 'VERSION'), version);

const sizes = new Map([...files, ...gzipped].map(([name, contents]) => [name, contents.length]));
sizes.set('index.html', Buffer.byteLength(html));
for (const name of [...sizes.keys()].sort()) {
  const size = sizes.get(name);
  console.log(`${relative(process.cwd(), join(out, name))}  ${(size / 1024).toFixed(1)} KiB`);
}
console.log(`version ${version}`);
