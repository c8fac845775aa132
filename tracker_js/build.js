// Combines src/*.js into one function, minifies it and writes dist/tracker.js (or --out FILE), and
// dist/discovery.js (next to it) from the URL rules and src/discovery.js.
// The same sources and the pinned terser give the same bytes on every machine:
// tests/test_tracker_build.py checks that, and the size the collector serves.
'use strict'
const fs = require('fs')
const path = require('path')
const zlib = require('zlib')
const { execFileSync } = require('child_process')
const { minify } = require('terser')

// Every file only declares functions and state, except the last line of track.js, which asks for
// the config: its answer comes after all of them have run. This order gzips smallest.
const SOURCES = ['config.js', 'rules.js', 'networking.js', 'track.js', 'engagement.js']
// The discovery module shares the URL rules; it is loaded only while a site's discovery is on, so it
// has a budget of its own.
const DISCOVERY_SOURCES = ['rules.js', 'discovery.js']
const LIMIT = 2048 // bytes, gzipped
const DISCOVERY_LIMIT = 1024
const out = process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1] : path.join(__dirname, 'dist', 'tracker.js')

// The collector compresses with Python's gzip (level 9), whose zlib often differs from node's by
// a few bytes: report Python's figure when python3 is there.
function gzippedSize(file) {
  try {
    const script = 'import gzip,sys; print(len(gzip.compress(open(sys.argv[1],"rb").read(), 9, mtime=0)))'
    return { bytes: Number(execFileSync('python3', ['-c', script, file]).toString()), by: "Python's gzip" }
  } catch (e) {
    return { bytes: zlib.gzipSync(fs.readFileSync(file), { level: 9 }).length, by: "node's zlib" }
  }
}

const OPTIONS = {
  ecma: 2020,
  // inline: 1 (only functions that just return): inlining the bigger ones gzipped 5 bytes larger.
  compress: { passes: 3, unsafe: true, unsafe_arrows: true, pure_getters: true, inline: 1 },
  // Properties named _likeThis are private to the tracker; anything stored or sent keeps its name.
  mangle: { properties: { regex: /^_/ } },
  format: { comments: false }
}

function read(names) {
  return names.map((name) => fs.readFileSync(path.join(__dirname, 'src', name), 'utf8')).join('\n')
}

async function write(file, wrapped, limit, options) {
  const result = await minify(wrapped, { ...OPTIONS, ...options })
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, result.code + '\n')
  const size = gzippedSize(file)
  console.log(`${path.relative(process.cwd(), file)}: ${result.code.length + 1} bytes, ${size.bytes} gzipped by ${size.by} (limit ${limit})`)
  if (size.bytes > limit) process.exitCode = 1
}

async function build() {
  // The try/catch keeps even a failure at start-up (say, no script tag found) out of the host page.
  await write(out, `!function(){try{\n${read(SOURCES)}\n}catch(e){}}()`, LIMIT, {})
  // A module (it reads import.meta.url), its names private to it like the tracker's.
  await write(path.join(path.dirname(out), 'discovery.js'), `try{\n${read(DISCOVERY_SOURCES)}\n}catch(e){}`, DISCOVERY_LIMIT, { module: true })
}

build().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
