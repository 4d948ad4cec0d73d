#!/usr/bin/env node
// Builds dist/mailagent: one self-contained executable (esbuild bundle + Node Single Executable
// Application with a V8 code cache). The result runs from any directory, without node_modules.
//
//   node build.mjs                                   src/cli.ts -> dist/mailagent
//   node build.mjs --entry x.ts --out dist/x         any other entry (smoke tests)
//
// Steps: esbuild -> dist/bundle.cjs (runs under plain node too), wrapped as dist/app.js with V8
// code caches made after running it (dist/app.run.cache, dist/app.cli.cache; see seaMain), a small
// main script dist/sea-main.cjs that loads them, `node --experimental-sea-config` ->
// dist/sea-prep.blob, copy (stripped) node -> dist/mailagent, postject the blob in, chmod 755.
// The better-sqlite3 addon travels as the SEA asset `better_sqlite3.node`; src/sqlite/open.ts
// extracts and dlopen()s it at run time, so the bundle never asks `bindings` to find it.
// When the bundle contains the chart renderer (src/render/chart.ts), its WebAssembly and font
// travel as SEA assets as well (CHART_ASSETS).
// Packages only some commands or mails need (SPLIT) are bundled apart, as parts: each part is a
// SEA asset with its own V8 code cache, compiled and run on first require(), so that the others
// never load their bytes. See splitPlugin().

import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = dirname(fileURLToPath(import.meta.url));
const requireFromRoot = createRequire(join(ROOT, 'package.json'));

/** Node's sentinel for SEA; postject flips it so the binary knows a blob is present. */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** What `node build.mjs` builds without --entry. */
const DEFAULT_ENTRY = 'src/cli.ts';
/** Asset key shared with src/sqlite/open.ts. */
export const SQLITE_ASSET = 'better_sqlite3.node';
/**
 * Chart rendering (src/render/chart.ts): resvg's WebAssembly and the DejaVu Sans font travel as
 * SEA assets (keys shared with chart.ts), added only when the bundle contains the renderer: ~2.8 MB
 * that no other program needs. chart.ts compiles them on its first render, never at start-up.
 */
export const CHART_ASSETS = {
  'chart/resvg.wasm': '@resvg/resvg-wasm/index_bg.wasm',
  'chart/dejavu-sans.woff': '@fontsource/dejavu-sans/files/dejavu-sans-latin-400-normal.woff',
};
const CHART_RENDERER = '@resvg/resvg-wasm';

const BANNER =
  'var require=require("node:module").createRequire(__filename),' +
  '__importMetaUrl=require("node:url").pathToFileURL(__filename).href;';

class BuildError extends Error {}

/** Runs a command, returns its output; on failure throws with everything it printed. */
function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
    throw new BuildError(`${what} failed (${r.signal ?? `exit ${r.status}`})${out ? `:\n${out}` : ''}`);
  }
  return r;
}

/** `bindings` hunts for the .node file on disk: impossible in the binary, so it must never run. */
const noBindingsPlugin = {
  name: 'no-bindings',
  setup(b) {
    b.onResolve({ filter: /^bindings$/ }, () => ({ path: 'bindings', namespace: 'no-bindings' }));
    b.onLoad({ filter: /.*/, namespace: 'no-bindings' }, () => ({
      loader: 'js',
      contents:
        'module.exports = function () { throw new Error(' +
        JSON.stringify(
          'better-sqlite3: the native addon must come from the executable (use openSqlite() from src/sqlite/open.ts)',
        ) +
        '); };',
    }));
  },
};

/**
 * Start-up: every copy of `string-width` (yargs and its cliui/wrap-ansi use 7.x and 8.x) builds an
 * `Intl.Segmenter` and Unicode-property regexps at module load, ~10 ms of a ~45 ms `--help`. The
 * help text is printable ASCII, whose width is its length, so each `string-width` import becomes a
 * small wrapper that answers that case itself and only `require()`s the real module (which
 * esbuild then initializes lazily) for anything else: ANSI escapes, tabs, non-ASCII.
 */
const lazyStringWidthPlugin = {
  name: 'lazy-string-width',
  setup(b) {
    b.onResolve({ filter: /^string-width$/ }, async (args) => {
      if (args.pluginData?.real) return undefined;
      const real = await b.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: { real: true },
      });
      if (real.errors.length) return { errors: real.errors };
      return { path: real.path, namespace: 'lazy-string-width' };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-string-width' }, (args) => ({
      loader: 'js',
      resolveDir: dirname(args.path),
      contents: `
        const printableAscii = /^[\\x20-\\x7e]*$/;
        let real;
        module.exports = function stringWidth(string, options) {
          if (typeof string === 'string' && printableAscii.test(string)) return string.length;
          real ??= require(${JSON.stringify(args.path)}).default;
          return real(string, options);
        };
        module.exports.default = module.exports;`,
    }));
  },
};

/**
 * yargs reads its message translations with y18n from `<executable>/../../../locales/<LANG>.json`:
 * inside the binary that is a path outside the product (for /usr/local/bin/mailagent, /locales/),
 * where any local user who can create it would put text into our output. The binary speaks
 * English only, so y18n gets a platform shim without a file system: the English keys are the
 * messages themselves.
 */
const noLocaleFilesPlugin = {
  name: 'no-locale-files',
  setup(b) {
    b.onResolve({ filter: /^y18n$/ }, async (args) => {
      if (args.pluginData?.real) return undefined;
      const real = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: { real: true } });
      if (real.errors.length) return { errors: real.errors };
      // index.mjs wraps the platform-independent core, which the package's exports map hides.
      return { path: join(dirname(real.path), 'build', 'lib', 'index.js'), namespace: 'no-locale-files' };
    });
    b.onLoad({ filter: /.*/, namespace: 'no-locale-files' }, (args) => ({
      loader: 'js',
      resolveDir: dirname(args.path),
      contents: `
        import { format } from 'node:util';
        import { y18n as create } from ${JSON.stringify(args.path)};
        const noFiles = { fs: {}, format, resolve: (...parts) => parts.join('/'), exists: () => false };
        export default (opts) => create({ ...opts, updateFiles: false }, noFiles);`,
    }));
  },
};

/** `require(id)` run on first use of `.default`: a drop-in for `__importDefault(require(id))`. */
const lazyDefault = (id) =>
  `{ get default() { const m = require(${JSON.stringify(id)}); return m && m.__esModule ? m.default : m; } }`;

/**
 * Start-up of `run`: parsing one plain-text mail needs mailparser, libmime and nodemailer's MIME
 * composer, but at module load they also build what only rare input uses: linkify-it compiles
 * its URL patterns for the full TLD list (~7 ms; we parse with skipTextLinks), html-to-text loads
 * htmlparser2, entities and selderee (~12 ms; only for HTML without a plain part), libmime builds
 * iconv-lite's GBK table just to learn which decoder class double-byte codecs share (~6 ms) and
 * loads encoding-japanese (only for ISO-2022-JP / EUC-JP / JIS), nodemailer loads its HTTP
 * client (http, https, tls, zlib) for attachments given by URL, which our replies never have, and
 * mailparser builds he's HTML entity tables (~0.6 ms and 110 kB of code cache) for HTML output only.
 * Each of these becomes a `require()` on first use. The patches replace exact snippets in the
 * copies these very imports resolve to, and fail the build when a snippet or file is not found:
 * a new dependency version must be re-checked, not silently left eager.
 */
function lazyDependencyPatches() {
  const fromRoot = (id) => requireFromRoot.resolve(id);
  const mailparserDir = dirname(fromRoot('mailparser'));
  const libmimeDir = dirname(createRequire(join(mailparserDir, 'index.js')).resolve('libmime'));
  const nodemailerDir = dirname(dirname(fromRoot('nodemailer/lib/mail-composer')));
  return [
    {
      file: join(mailparserDir, 'mail-parser.js'),
      replace: [
        ['const html_to_text_1 = require("html-to-text");', 'const html_to_text_1 = { get htmlToText() { return require("html-to-text").htmlToText; } };'],
        // he builds its tables of ~2,000 HTML entities at load, for HTML output only: textAsHtml
        // (skipped) and the `html` form of each address header, now made when first read.
        ['const he_1 = __importDefault(require("he"));', `const he_1 = ${lazyDefault('he')};`],
        ['value = {\n                        value,\n                        html: this.getAddressesHTML(value),\n                        text: this.getAddressesText(value)\n                    };',
          'value = __lazyHtml(value, (addresses) => this.getAddressesHTML(addresses), this.getAddressesText(value));'],
        ['const linkify_it_1 = __importDefault(require("linkify-it"));', `const linkify_it_1 = ${lazyDefault('linkify-it')};`],
        ['const tlds_cjs_1 = __importDefault(require("./tlds.cjs"));', `const tlds_cjs_1 = ${lazyDefault('./tlds.cjs')};`],
        // Configuration calls are recorded and replayed on the real instance at its first use.
        ['const linkify = (0, linkify_it_1.default)();\nlinkify\n    .tlds(tlds_cjs_1.default)',
          'const linkify = __lazyInstance(() => (0, linkify_it_1.default)(), ["tlds", "add", "set"]);\nlinkify\n    .tlds(() => tlds_cjs_1.default)'],
      ],
      append: `
        // The address object MailParser builds, its HTML form made (with he) when first read.
        function __lazyHtml(value, format, text) {
          let html;
          return { value, get html() { return (html ??= format(value)); }, set html(formatted) { html = formatted; }, text };
        }
        function __lazyInstance(create, setters) {
          let real;
          const calls = [];
          const proxy = new Proxy({}, {
            get(_target, key) {
              if (!real && setters.includes(key)) {
                return (...args) => (calls.push([key, args]), proxy);
              }
              if (!real) {
                real = create();
                // A function argument to tlds() is the list itself, read only now.
                for (const [k, args] of calls) real[k](...args.map((a) => (k === "tlds" && typeof a === "function" ? a() : a)));
              }
              const value = real[key];
              return typeof value === "function" ? value.bind(real) : value;
            },
          });
          return proxy;
        }`,
    },
    {
      file: join(mailparserDir, 'address-header.js'),
      replace: [['const he_1 = __importDefault(require("he"));', `const he_1 = ${lazyDefault('he')};`]],
    },
    {
      // iconv-lite's codec tables are needed only for a charset other than UTF-8/ASCII.
      file: join(libmimeDir, 'charset.js'),
      replace: [
        ['const iconv_lite_1 = __importDefault(require("iconv-lite"));', `const iconv_lite_1 = ${lazyDefault('iconv-lite')};`],
        ['const encoding_japanese_1 = __importDefault(require("encoding-japanese"));', `const encoding_japanese_1 = ${lazyDefault('encoding-japanese')};`],
        ["const UNSUPPORTED_CODECS = new Set(['utf7', 'utf7imap', 'base64', 'hex'].map(name => iconv_lite_1.default.getCodec(name)));",
          "let unsupportedCodecs;\nconst UNSUPPORTED_CODECS = { has: (codec) => (unsupportedCodecs ??= new Set(['utf7', 'utf7imap', 'base64', 'hex'].map(name => iconv_lite_1.default.getCodec(name)))).has(codec) };"],
        ["const DBCS_DECODER = iconv_lite_1.default.getCodec('gbk').decoder;\n", ''],
        ['if (codec.decoder === DBCS_DECODER) {', 'if (codec.decoder === __dbcsDecoder()) {'],
        ["const BYTE_ORDER_GUESSING = new Map([\n    [iconv_lite_1.default.getCodec('utf-16'), 200],\n    [iconv_lite_1.default.getCodec('utf-32'), 400]\n]);",
          "let byteOrderGuessing;\nconst BYTE_ORDER_GUESSING = { get: (codec) => (byteOrderGuessing ??= new Map([\n    [iconv_lite_1.default.getCodec('utf-16'), 200],\n    [iconv_lite_1.default.getCodec('utf-32'), 400]\n])).get(codec) };"],
      ],
      // Every double-byte codec's decoder is DBCSCodec.prototype.decoder: read it from the class
      // (getCodec() has loaded iconv-lite's encodings by the time this runs) instead of building GBK.
      append: `
        function __dbcsDecoder() {
          const encodings = iconv_lite_1.default.encodings;
          return typeof encodings?._dbcs === 'function' ? encodings._dbcs.prototype.decoder : iconv_lite_1.default.getCodec('gbk').decoder;
        }`,
    },
    {
      // The MIME type table is for attachment names only.
      file: join(libmimeDir, 'libmime.js'),
      replace: [['const mimetypes = __importStar(require("./mimetypes.js"));',
        'const mimetypes = { get list() { return require("./mimetypes.js").list; }, get extensions() { return require("./mimetypes.js").extensions; } };']],
    },
    {
      file: join(nodemailerDir, 'mime-node', 'index.js'),
      replace: [['const index_js_2 = __importDefault(require("../fetch/index.js"));', `const index_js_2 = ${lazyDefault('../fetch/index.js')};`]],
    },
    {
      file: join(nodemailerDir, 'shared', 'index.js'),
      replace: [
        ['const index_js_1 = __importDefault(require("../fetch/index.js"));', `const index_js_1 = ${lazyDefault('../fetch/index.js')};`],
        ['const node_dns_1 = __importDefault(require("node:dns"));', `const node_dns_1 = ${lazyDefault('node:dns')};`], // SMTP host resolution
      ],
    },
    {
      // The MIME type table is for attachment names only.
      file: join(nodemailerDir, 'mime-funcs', 'index.js'),
      replace: [['const mimeTypes = __importStar(require("./mime-types.js"));',
        'const mimeTypes = { get detectExtension() { return require("./mime-types.js").detectExtension; }, get detectMimeType() { return require("./mime-types.js").detectMimeType; } };']],
    },
  ];
}

/** The directory of the package that owns `file` (dist/cjs/package.json only sets a "type"). */
function packageRoot(file) {
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name) return dir;
  }
  throw new BuildError(`no package.json above ${file}`);
}

const lazyDependenciesPlugin = {
  name: 'lazy-dependencies',
  setup(b) {
    const patches = new Map(lazyDependencyPatches().map((p) => [p.file, { ...p, root: `${packageRoot(p.file)}/` }]));
    const applied = new Set();
    const bundledRoots = new Set();
    b.onStart(() => {
      applied.clear();
      bundledRoots.clear();
    });
    b.onLoad({ filter: /\.js$/ }, (args) => {
      const patch = patches.get(args.path);
      if (!patch) {
        for (const p of patches.values()) if (args.path.startsWith(p.root)) bundledRoots.add(p.root);
        return undefined;
      }
      let contents = readFileSync(args.path, 'utf8');
      for (const [from, to] of patch.replace) {
        const at = contents.indexOf(from);
        if (at < 0 || contents.indexOf(from, at + 1) >= 0) {
          return { errors: [{ text: `lazy-dependencies: ${at < 0 ? 'not found' : 'found twice'} in ${relative(ROOT, args.path)}: ${from.split('\n')[0]}` }] };
        }
        contents = contents.slice(0, at) + to + contents.slice(at + from.length);
      }
      applied.add(args.path);
      return { contents: contents + (patch.append ?? ''), loader: 'js' };
    });
    b.onEnd((result) => {
      if (result.errors.length) return undefined;
      // An entry that does not use the package at all (a smoke-test build) needs no patch.
      const missing = [...patches.values()].filter((p) => bundledRoots.has(p.root) && !applied.has(p.file)).map((p) => p.file);
      if (missing.length) {
        const text = `lazy-dependencies: never bundled, patch not applied: ${missing.map((f) => relative(ROOT, f)).join(', ')}`;
        console.error(text); // esbuild does not print errors returned from onEnd
        return { errors: [{ text }] };
      }
    });
  },
};

/**
 * Packages that only some commands or some mails need, moved out of the main bundle into parts
 * (part name: its packages). Measured: each megabyte of bundle costs every start ~2 ms for its
 * source and code cache. A package shared by a part and the main bundle (nodemailer, libmime) is
 * copied into the part; parts never load each other.
 */
const SPLIT = {
  mailauth: ['mailauth'], // DKIM verification
  imapflow: ['imapflow'], // watch
  openpgp: ['openpgp'], // PGP users
  mysql2: ['mysql2'], // MySQL/MariaDB databases
  pg: ['pg'], // PostgreSQL databases and state store
  yaml: ['yaml'], // YAML users files
  html: ['html-to-text', 'htmlparser2'], // HTML mail (the visible-text reader; mailparser's converter, never used)
  'iconv-lite': ['iconv-lite'], // charsets other than UTF-8 and ASCII
  'encoding-japanese': ['encoding-japanese'], // ISO-2022-JP, EUC-JP, JIS
  ssh2: ['ssh2'], // SFTP shares of the files service
  'net-snmp': ['net-snmp'], // SNMP devices of the nms service
  tar: ['tar'], // archives of the backup service
};

/** SEA asset keys of a part's source (a CommonJS function expression) and its V8 code cache. */
const partAsset = (name, kind) => `part.${name}.${kind}`;

/** Each part is stored wrapped like a CommonJS module, so that one vm.Script compiles it. */
const PART_HEAD = '(function (exports, require, module, __filename, __dirname) {';
const PART_TAIL = '\n})';

/**
 * Run time side of the parts (bundled once into the main bundle): compiles a part from its SEA
 * asset with its code cache (or, when the bundle runs under plain node, from the parts folder
 * beside it), runs it with the main bundle's require, and keeps it. A rejected cache only costs
 * time (NODE_DEBUG=mailagent tells).
 */
function splitLoaderSource(partsDir) {
  return `
    const parts = new Map();
    const debug = require('node:util').debuglog('mailagent');
    function isSea() {
      try {
        return require('node:sea').isSea();
      } catch {
        return false;
      }
    }
    function partCode(name) {
      if (isSea()) {
        const sea = require('node:sea');
        let source;
        try {
          source = sea.getAsset(${JSON.stringify(partAsset('@', 'js'))}.replace('@', name), 'utf8');
        } catch (err) {
          throw new Error('the executable has no part "' + name + '": ' + err.message);
        }
        let cachedData;
        try {
          cachedData = Buffer.from(sea.getAsset(${JSON.stringify(partAsset('@', 'cache'))}.replace('@', name)));
        } catch {
          // built without code cache
        }
        return { source, cachedData, filename: 'parts/' + name + '.js' };
      }
      const fs = require('node:fs');
      const path = require('node:path');
      const file = path.join(__dirname, ${JSON.stringify(partsDir)}, name + '.js');
      const cache = path.join(__dirname, ${JSON.stringify(partsDir)}, name + '.cache');
      return { source: fs.readFileSync(file, 'utf8'), cachedData: fs.existsSync(cache) ? fs.readFileSync(cache) : undefined, filename: file };
    }
    exports.loadPart = function loadPart(name) {
      let part = parts.get(name);
      if (part) return part;
      const t0 = performance.now();
      const { source, cachedData, filename } = partCode(name);
      const vm = require('node:vm');
      const script = new vm.Script(source, { filename, cachedData });
      const Module = require('node:module');
      const mod = new Module(filename);
      mod.filename = filename;
      script.runInThisContext().call(mod.exports, mod.exports, require, mod, __filename, __dirname);
      mod.loaded = true;
      part = mod.exports;
      parts.set(name, part);
      debug('part %s: %d kB, code cache %s, %s ms', name, source.length >> 10,
        cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'REJECTED' : 'accepted', (performance.now() - t0).toFixed(1));
      return part;
    };`;
}

const SPLIT_LOADER = 'mailagent:split-loader';

/**
 * Main bundle: every import of a SPLIT package (or a file in it) becomes a stub that asks the
 * loader for the package's part on first require(). Records the specifiers each part must serve.
 */
function splitPlugin(partsDir, used) {
  const partOf = new Map(Object.entries(SPLIT).flatMap(([part, packages]) => packages.map((pkg) => [pkg, part])));
  const names = [...partOf.keys()].map((n) => n.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|');
  const filter = new RegExp(`^(${names})(/.*)?$`);
  return {
    name: 'split',
    setup(b) {
      b.onStart(() => used.clear());
      b.onResolve({ filter }, async (args) => {
        if (args.pluginData?.real) return undefined;
        // Fails here, at build time, when the package or file does not exist.
        const real = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: { real: true } });
        if (real.errors.length) return { errors: real.errors };
        const part = partOf.get(filter.exec(args.path)[1]);
        if (!used.has(part)) used.set(part, new Set());
        used.get(part).add(args.path);
        return { path: args.path, namespace: 'split-stub', pluginData: { part } };
      });
      b.onLoad({ filter: /.*/, namespace: 'split-stub' }, (args) => ({
        loader: 'js',
        contents: `module.exports = require(${JSON.stringify(SPLIT_LOADER)}).loadPart(${JSON.stringify(args.pluginData.part)})(${JSON.stringify(args.path)});`,
      }));
      b.onResolve({ filter: new RegExp(`^${SPLIT_LOADER}$`) }, () => ({ path: SPLIT_LOADER, namespace: 'split-loader' }));
      b.onLoad({ filter: /.*/, namespace: 'split-loader' }, () => ({ loader: 'js', contents: splitLoaderSource(partsDir) }));
    },
  };
}

/** The entry of a part: a function from each specifier the main bundle imports to its module. */
function partEntry(part, specifiers) {
  const cases = [...specifiers].sort().map((s) => `    case ${JSON.stringify(s)}: return require(${JSON.stringify(s)});`);
  return `module.exports = function partModule(id) {\n  switch (id) {\n${cases.join('\n')}\n    default: throw new Error(${JSON.stringify(`part ${part} has no module `)} + id);\n  }\n};\n`;
}

/**
 * A real dynamic import() cannot run in the executable (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING).
 * esbuild's parser finds them, not a text search (comments and strings say `import(` too): told
 * that the target lacks import(), it rewrites each one, so the output changes only if there is one.
 */
async function dynamicImports(esbuild, code) {
  const options = { minifyWhitespace: true, legalComments: 'none', logLevel: 'silent' };
  const as = (await esbuild.transform(code, options)).code;
  const without = (await esbuild.transform(code, { ...options, supported: { 'dynamic-import': false } })).code;
  if (as === without) return [];
  const found = [];
  for (const m of as.matchAll(/(?<![\w$.])import\s*\(/g)) found.push(as.slice(Math.max(0, m.index - 40), m.index + 40));
  return found.length ? found : ['(position not found)'];
}

/**
 * Compiles every part with the node that becomes the executable and saves V8's code cache, in a
 * child without NODE_OPTIONS (V8 rejects a cache made under other flags). A part that does not
 * compile fails the build here. Each entry: [source, cache, encoding = utf8, script name = source].
 */
function makeCodeCaches(files) {
  const script = `
    const { readFileSync, writeFileSync } = require('node:fs');
    const { Script } = require('node:vm');
    for (const [source, cache, encoding = 'utf8', filename = source] of JSON.parse(process.argv[1])) {
      writeFileSync(cache, new Script(readFileSync(source, encoding), { filename }).createCachedData());
    }`;
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const r = spawnSync(process.execPath, ['-e', script, JSON.stringify(files)], { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new BuildError(`a bundle does not compile:\n${`${r.stdout}${r.stderr}`.trim()}`);
}

/** SEA asset key of the application: the main bundle, wrapped like a part. */
const APP_ASSET = 'app.js';
/** SEA asset key of a code cache of the application (see seaMain). */
const appCacheAsset = (kind) => `app.${kind}.cache`;

/**
 * The name stack traces show for the application: V8 keeps the one a code cache was made under
 * (dist/bundle.cjs, whose lines app.js keeps), not the executable's path given at run time.
 */
const appScriptName = (bundle) => relative(ROOT, bundle);

/**
 * The encoding the application is stored in: that of the string V8 makes of it, so that reading
 * it is one copy, never a UTF-8 decoding (~16 M instructions for 1.2 MB at every start). An ASCII
 * bundle is a one-byte string (latin1); one non-ASCII character makes all of it two-byte (utf16le),
 * twice the bytes to copy and fault in at every start (~650 page faults for 1.3 MB). esbuild
 * escapes non-ASCII characters except in regular expression literals: write them as \u escapes.
 */
const appEncoding = (text) => (/^[\0-\x7f]*$/.test(text) ? 'latin1' : 'utf16le');

/**
 * What each code cache of the application is made after (default entry only; any other gets one
 * `cli` cache of its top-level code). `run` starts once per mail and has a cache of its own: the
 * functions of the other kind would only cost it time to deserialize. Functions the warm-up did
 * not run are compiled on first call, as without these caches. The output must match, or the
 * build fails.
 */
const WARM_UPS = {
  // What processing the example help mail with the example config runs.
  run: { args: ['run', '--print', '--config', 'config.json'], mail: 'examples/01-help.eml', config: 'config.example.json', output: /^In-Reply-To: /m },
  // Every other start (help, watch, users, ...): the command line parser, as `--help` runs it.
  cli: { args: ['--help'], output: /^Commands:/m },
};

/**
 * The executable's main script. Node compiles a SEA's main script with a code cache made at build
 * time without running it, so the cache holds the top-level code only: every function a start
 * calls was parsed and compiled again at each start (about 45% of the instructions of a `run`).
 * Instead, this small main script compiles the application from its asset with a code cache the
 * build made after running the application (warmUpCodeCache), which holds those functions too.
 * NODE_DEBUG=mailagent-main tells which cache it used and whether V8 accepted it (a rejected or
 * missing cache only costs time).
 */
const seaMain = (encoding) => `'use strict';
const sea = require('node:sea');
const { Script } = require('node:vm');
const kind = process.argv[2] === 'run' ? 'run' : 'cli';
// Raw assets are the executable's own mapped bytes, not copies: each megabyte copied is ~250 page
// faults of fresh memory. V8 only reads the cache; the source is copied once, into the string.
let cachedData;
try {
  cachedData = new Uint8Array(sea.getRawAsset(${JSON.stringify(appCacheAsset('@'))}.replace('@', kind)));
} catch {
  // built without this cache
}
const source = Buffer.from(sea.getRawAsset(${JSON.stringify(APP_ASSET)})).toString(${JSON.stringify(encoding)});
const script = new Script(source, { filename: __filename, cachedData });
require('node:util').debuglog('mailagent-main')('code cache %s %s', kind, cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'REJECTED' : 'accepted');
script.runInThisContext().call(exports, exports, require, module, __filename, __dirname);
`;

/**
 * Runs the application (the wrapped bundle `app`) once as `warmUp` says, in a child (same node, no
 * NODE_OPTIONS, in a temporary directory holding the copied config and so the state and audit
 * files it names), and saves V8's code cache of the script as the process exits: it then holds
 * every function that ran. The application runs as in the executable, except that it is no SEA:
 * parts would be read from the parts folder beside `bundle`.
 */
function warmUpCodeCache({ app, encoding, cache, bundle, warmUp }) {
  const script = `
    const { readFileSync, writeFileSync } = require('node:fs');
    const { dirname } = require('node:path');
    const { Script } = require('node:vm');
    const [app, encoding, cache, name, filename, args] = JSON.parse(process.argv[1]);
    const script = new Script(readFileSync(app, encoding), { filename: name });
    // On exit, however it comes: yargs ends --help with process.exit().
    process.on('exit', () => writeFileSync(cache, script.createCachedData()));
    process.argv = [process.execPath, filename, ...args];
    const module = { exports: {} };
    script.runInThisContext().call(module.exports, module.exports, require, module, filename, dirname(filename));`;
  const dir = mkdtempSync(join(tmpdir(), 'mailagent-warm-up-'));
  try {
    if (warmUp.config) writeFileSync(join(dir, 'config.json'), readFileSync(join(ROOT, warmUp.config)));
    // The Date must fall inside the replay window, or the agent stays silent.
    const input = warmUp.mail && Buffer.from(readFileSync(join(ROOT, warmUp.mail), 'latin1').replace(/^Date: .*$/m, `Date: ${new Date().toUTCString()}`), 'latin1');
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const args = JSON.stringify([app, encoding, cache, appScriptName(bundle), bundle, warmUp.args]);
    const r = spawnSync(process.execPath, ['-e', script, args], { cwd: dir, env, input, encoding: 'latin1', maxBuffer: 64 << 20, timeout: 60_000 });
    if (r.error) throw r.error;
    if (r.status !== 0 || !warmUp.output.test(r.stdout) || !existsSync(cache)) {
      throw new BuildError(`the warm-up \`${warmUp.args.join(' ')}\` for a code cache failed (${r.signal ?? `exit ${r.status}`}${warmUp.output.test(r.stdout) ? '' : ', unexpected output'}):\n${`${r.stderr}`.trim()}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function findSqliteAddon() {
  const pkgDir = dirname(requireFromRoot.resolve('better-sqlite3/package.json'));
  const addon = join(pkgDir, 'build', 'Release', 'better_sqlite3.node');
  if (!existsSync(addon)) {
    throw new BuildError(`${addon} is missing: run \`npm rebuild better-sqlite3\``);
  }
  return addon;
}

/** Copies the running node to `output`, stripped of symbols when `strip` exists (before injection!). */
function copyNode(output) {
  rmSync(output, { force: true }); // unlink first: the old binary may be running (ETXTBSY), or hard-linked
  if (process.platform !== 'win32' && process.platform !== 'darwin') {
    const r = spawnSync('strip', ['-o', output, process.execPath], { encoding: 'utf8' });
    if (!r.error && r.status === 0) return true;
    if (r.error && r.error.code !== 'ENOENT') throw r.error;
    if (!r.error) throw new BuildError(`strip failed: ${(r.stderr || r.stdout).trim()}`);
  }
  copyFileSync(process.execPath, output);
  return false;
}

/**
 * Builds one executable. Paths are relative to the project root.
 * @param {{ entry?: string, output?: string, minify?: boolean, codeCache?: boolean }} [opts]
 * @returns {Promise<{ output: string, bytes: number, bundleBytes: number, nonAscii?: string, parts: { name: string, bytes: number }[], ms: number, stripped: boolean }>}
 */
export async function build({
  entry = DEFAULT_ENTRY,
  output = 'dist/mailagent',
  minify = true,
  codeCache = true,
} = {}) {
  const t0 = performance.now();
  const esbuild = await import('esbuild');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

  const outAbs = resolve(ROOT, output);
  const outDir = dirname(outAbs);
  // The default build uses the documented names; any other output gets its own intermediates.
  const prefix = basename(outAbs) === 'mailagent' ? '' : `${basename(outAbs)}.`;
  const bundle = join(outDir, `${prefix}bundle.cjs`);
  const seaConfig = join(outDir, `${prefix}sea.json`);
  const blob = join(outDir, `${prefix}sea-prep.blob`);
  const partsDirName = `${prefix}parts`;
  const partsDir = join(outDir, partsDirName);
  mkdirSync(outDir, { recursive: true });
  rmSync(partsDir, { recursive: true, force: true }); // no stale part may reach the executable

  const addon = findSqliteAddon();
  const addonSha256 = createHash('sha256').update(readFileSync(addon)).digest('hex');

  // 1. Bundle. A failure throws with esbuild's messages (already printed via logLevel).
  // The parts get the same options, minus the split.
  const common = {
    absWorkingDir: ROOT,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // pg-native: optional libpq binding that pg requires only when asked (pg.native); absent, pg says so and goes on.
    // ssh2's optional native crypto (*.node) and cpu-features: required in try/catch, absent in
    // the executable, where ssh2 uses its JavaScript ciphers.
    external: ['typescript', 'pg-native', 'cpu-features', '*.node'],
    define: {
      'import.meta.url': '__importMetaUrl',
      __APP_VERSION__: JSON.stringify(pkg.version),
      __SQLITE_ADDON_SHA256__: JSON.stringify(addonSha256), // names the extracted copy (src/sqlite/open.ts)
    },
    banner: { js: BANNER },
    plugins: [noBindingsPlugin, lazyStringWidthPlugin, noLocaleFilesPlugin, lazyDependenciesPlugin],
    minify,
    legalComments: 'none',
    lineLimit: 400, // minified, yet an uncaught error's source excerpt stays one short line
    logLevel: 'warning',
  };
  const used = new Map();
  const main = await esbuild.build({
    ...common,
    entryPoints: [resolve(ROOT, entry)],
    outfile: bundle,
    metafile: true, // tells whether the chart renderer is in, and so its assets
    plugins: [splitPlugin(partsDirName, used), ...common.plugins],
  });
  const rendererDir = relative(ROOT, dirname(requireFromRoot.resolve(CHART_RENDERER))).split('\\').join('/') + '/';
  const charts = Object.keys(main.metafile.inputs).some((input) => input.startsWith(rendererDir));
  // An import that does not resolve has failed above; a table entry the product never imports is
  // stale (a smoke-test entry imports little, and is not checked).
  if (resolve(ROOT, entry) === resolve(ROOT, DEFAULT_ENTRY)) {
    const imported = new Set([...used.values()].flatMap((specifiers) => [...specifiers].map((s) => s.match(/^(@[^/]+\/)?[^/]+/)[0])));
    const stale = Object.values(SPLIT).flat().filter((pkg) => !imported.has(pkg));
    if (stale.length) throw new BuildError(`split packages never imported by ${DEFAULT_ENTRY} (remove them from SPLIT): ${stale.join(', ')}`);
  }

  // 1b. Parts: one CommonJS bundle per part this entry imports, wrapped for vm.Script. Their code
  //     caches are made even without codeCache: compiling them is the check that they compile.
  mkdirSync(partsDir, { recursive: true });
  const parts = await Promise.all(
    [...used].map(async ([part, specifiers]) => {
      const result = await esbuild.build({
        ...common,
        stdin: { contents: partEntry(part, specifiers), resolveDir: ROOT, sourcefile: `part-${part}.cjs`, loader: 'js' },
        write: false,
        outfile: join(partsDir, `${part}.cjs`),
      });
      const code = result.outputFiles[0].text;
      const imports = await dynamicImports(esbuild, code);
      if (imports.length) throw new BuildError(`part ${part} contains a dynamic import(), which fails in the executable:\n  ${imports.join('\n  ')}`);
      const source = join(partsDir, `${part}.js`);
      writeFileSync(source, `${PART_HEAD}${code}${PART_TAIL}`);
      return { part, source, cache: join(partsDir, `${part}.cache`), bytes: Buffer.byteLength(code) };
    }),
  );
  if (parts.length) makeCodeCaches(parts.map((p) => [p.source, p.cache]));

  // 1c. The application as an asset, wrapped like a part, and its code caches made after warm-ups
  //     (see seaMain); any other entry gets one cache, made without running it.
  const app = join(outDir, `${prefix}app.js`);
  const seaMainFile = join(outDir, `${prefix}sea-main.cjs`);
  const appText = `${PART_HEAD}${readFileSync(bundle, 'utf8')}${PART_TAIL}`;
  const encoding = appEncoding(appText);
  writeFileSync(app, appText, encoding);
  writeFileSync(seaMainFile, seaMain(encoding));
  const appCaches = {};
  for (const kind of Object.keys(WARM_UPS)) rmSync(join(outDir, `${prefix}${appCacheAsset(kind)}`), { force: true });
  if (codeCache) {
    const cacheFile = (kind) => (appCaches[kind] = join(outDir, `${prefix}${appCacheAsset(kind)}`));
    if (resolve(ROOT, entry) === resolve(ROOT, DEFAULT_ENTRY)) {
      for (const [kind, warmUp] of Object.entries(WARM_UPS)) warmUpCodeCache({ app, encoding, cache: cacheFile(kind), bundle, warmUp });
    } else {
      makeCodeCaches([[app, cacheFile('cli'), encoding, appScriptName(bundle)]]);
    }
  }

  // 2. SEA preparation blob (code cache is produced by this very node binary, which we then copy).
  const rel = (p) => relative(ROOT, p) || '.';
  const config = {
    main: rel(seaMainFile),
    output: rel(blob),
    disableExperimentalSEAWarning: true,
    useCodeCache: codeCache,
    assets: { [SQLITE_ASSET]: rel(addon), [APP_ASSET]: rel(app) },
  };
  for (const [kind, file] of Object.entries(appCaches)) config.assets[appCacheAsset(kind)] = rel(file);
  if (charts) {
    for (const [key, file] of Object.entries(CHART_ASSETS)) config.assets[key] = rel(requireFromRoot.resolve(file));
  }
  for (const p of parts) {
    config.assets[partAsset(p.part, 'js')] = rel(p.source);
    if (codeCache) config.assets[partAsset(p.part, 'cache')] = rel(p.cache);
  }
  writeFileSync(seaConfig, `${JSON.stringify(config, null, 2)}\n`);
  rmSync(blob, { force: true });
  run(process.execPath, ['--experimental-sea-config', rel(seaConfig)], 'node --experimental-sea-config');

  // 3. Executable: copy node (stripped BEFORE injection: stripping afterwards breaks the binary).
  const stripped = copyNode(outAbs);
  chmodSync(outAbs, 0o755);

  // 4. Inject. postject's own CLI from node_modules, in a child so its WASM runtime's process hooks
  //    and its "Can't find string offset for section name" chatter stay out of our way.
  const postjectCli = join(dirname(requireFromRoot.resolve('postject/package.json')), 'dist', 'cli.js');
  const args = [postjectCli, outAbs, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE];
  if (process.platform === 'darwin') {
    run('codesign', ['--remove-signature', outAbs], 'codesign --remove-signature');
    args.push('--macho-segment-name', 'NODE_SEA');
  }
  try {
    run(process.execPath, args, 'postject');
  } catch (err) {
    rmSync(outAbs, { force: true }); // never leave a half-made binary behind
    throw err;
  }
  if (process.platform === 'darwin') run('codesign', ['--sign', '-', outAbs], 'codesign');
  chmodSync(outAbs, 0o755);

  return {
    output: outAbs,
    bytes: statSync(outAbs).size,
    bundleBytes: statSync(bundle).size,
    // Where the bundle stops being ASCII (and so is stored as UTF-16), to fix at the source.
    nonAscii: encoding === 'latin1' ? undefined : appText.slice(Math.max(0, appText.search(/[^\0-\x7f]/) - 30)).slice(0, 60),
    parts: parts.map((p) => ({ name: p.part, bytes: p.bytes })),
    ms: performance.now() - t0,
    stripped,
  };
}

const mb = (n) => (n < 1 << 20 ? `${Math.ceil(n / 1024)} kB` : `${(n / 1024 / 1024).toFixed(1)} MB`);
const shortPath = (p) => {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
};

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { values } = parseArgs({
    options: {
      entry: { type: 'string' },
      out: { type: 'string' },
      'no-minify': { type: 'boolean' },
    },
  });
  try {
    const r = await build({ entry: values.entry, output: values.out, minify: !values['no-minify'] });
    console.log(
      `built ${shortPath(r.output)}: ${mb(r.bytes)} (bundle ${mb(r.bundleBytes)}` +
        `${r.parts.length ? `; parts ${r.parts.map((p) => `${p.name} ${mb(p.bytes)}`).join(', ')}` : ''}` +
        `${r.stripped ? '' : ', node not stripped: no `strip` command'}) in ${(r.ms / 1000).toFixed(1)}s`,
    );
    if (r.nonAscii) console.log(`note: the bundle is not ASCII, so it is stored as UTF-16 (twice the bytes to read at each start): ${JSON.stringify(r.nonAscii)}`);
  } catch (err) {
    // esbuild has already printed its diagnostics; do not repeat them as a stack trace.
    const msg = err instanceof BuildError ? err.message : err?.errors ? 'esbuild failed' : (err?.stack ?? String(err));
    console.error(`build failed: ${msg}`);
    process.exitCode = 1;
  }
}
