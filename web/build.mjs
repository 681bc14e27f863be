// Builds web/dist/: the demo meeting page (index.html + demo.js) and the browser-test harness
// page (harness.html + harness.js). Both bundle the unmodified npm `amazon-chime-sdk-js`.
//
//   npm run build
//
// Two things the SDK needs from a browser bundle (see chime-js-client-protocol.md §7):
//  - its index pulls in @aws-sdk/client-chime-sdk-messaging, whose Node credential providers
//    `require("node:*")`; those code paths never run in a browser, so every `node:*` import is
//    replaced by an empty module;
//  - some dependencies read `global`, which browsers call `globalThis`.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, 'src');
const dist = join(here, 'dist');

const stubNodeBuiltins = {
  name: 'stub-node-builtins',
  setup(build) {
    build.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: 'node-stub' }));
    build.onLoad({ filter: /.*/, namespace: 'node-stub' }, () => ({
      contents: 'module.exports = {};',
      loader: 'js',
    }));
  },
};

const pages = [
  { script: 'demo.js', html: 'index.html' },
  { script: 'harness.js', html: 'harness.html' },
];

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

for (const page of pages) {
  await esbuild.build({
    entryPoints: [join(src, page.script)],
    outfile: join(dist, page.script),
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    minify: false,
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
    define: { global: 'globalThis' },
    plugins: [stubNodeBuiltins],
  });
  await copyFile(join(src, page.html), join(dist, page.html));
}
await copyFile(join(src, 'style.css'), join(dist, 'style.css'));

console.log(`built ${pages.map((p) => `${p.html} + ${p.script}`).join(', ')} into ${dist}`);
