// Builds the browser extension: src/* plus the tracker (../dist/tracker.js) and its URL rules
// (../src/rules.js), both unchanged, into one zip, the same bytes on every machine: files in sorted
// order, every time stamp 1980-01-01 00:00, no owner or permission bits, and stored, not compressed:
// deflate's bytes depend on the zlib build a node version bundles, so a compressed zip would be
// reproducible only with node itself pinned. Stored, the zip is about 50 KB.
//
//   node extension/build.js [--out FILE.zip] [--unpacked DIR] [--origin https://crm.example.com ...]
//
// --origin (repeatable) writes those origins into the manifest's host_permissions: an extension
// force-installed by policy cannot ask the manager, so it needs them from the start. Without it the
// extension asks (optional_host_permissions) for the origins of the setup link pasted into it.
// --unpacked also writes the files as a folder, for --load-extension.
'use strict'
const fs = require('fs')
const path = require('path')

const SRC = path.join(__dirname, 'src')
const TRACKER = path.join(__dirname, '..', 'dist', 'tracker.js')
// The tracker's URL rules, for the content script's step discovery (src/discovery.js): matched and
// cleaned exactly as the tracker does.
const RULES = path.join(__dirname, '..', 'src', 'rules.js')

function option(name) {
  const values = []
  process.argv.forEach((arg, i) => arg == name && values.push(process.argv[i + 1]))
  return values
}

function files(dir, prefix = '') {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => (entry.isDirectory() ? files(path.join(dir, entry.name), prefix + entry.name + '/') : [prefix + entry.name]))
}

// Origins as the browser writes them; anything else is refused rather than widened into a pattern.
function hostPermissions(origins) {
  return origins.map((text) => {
    const url = new URL(text)
    const plain = /^([a-z0-9-]+\.)*[a-z0-9-]+$|^\[[0-9a-f:.]+\]$/.test(url.hostname)
    if (!plain || !/^https?:$/.test(url.protocol) || url.origin != text.replace(/\/$/, '')) throw new Error(`--origin ${text}: give an origin such as https://crm.example.com`)
    return url.origin + '/*'
  })
}

function contents(origins) {
  const out = new Map()
  for (const name of files(SRC).sort()) out.set(name, fs.readFileSync(path.join(SRC, name)))
  const manifest = JSON.parse(out.get('manifest.json'))
  manifest.host_permissions = hostPermissions(origins)
  out.set('manifest.json', Buffer.from(JSON.stringify(manifest, null, 2) + '\n'))
  out.set('tracker.js', fs.readFileSync(TRACKER))
  out.set('rules.js', fs.readFileSync(RULES))
  return new Map([...out.entries()].sort(([a], [b]) => (a < b ? -1 : 1)))
}

const CRC = Array.from({ length: 256 }, (_, n) => {
  for (let k = 0; k < 8; k++) n = n & 1 ? 0xedb88320 ^ (n >>> 1) : n >>> 1
  return n >>> 0
})
function crc32(bytes) {
  let c = 0xffffffff
  for (const b of bytes) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

const DOS_DATE = (0 << 9) | (1 << 5) | 1 // 1980-01-01, the earliest a zip can say
const DOS_TIME = 0

function zip(entries) {
  const locals = []
  const centrals = []
  let offset = 0
  for (const [name, data] of entries) {
    const nameBytes = Buffer.from(name)
    const head = Buffer.alloc(30)
    head.writeUInt32LE(0x04034b50, 0)
    head.writeUInt16LE(20, 4) // version needed
    head.writeUInt16LE(0x0800, 6) // names in UTF-8
    head.writeUInt16LE(0, 8) // stored
    head.writeUInt16LE(DOS_TIME, 10)
    head.writeUInt16LE(DOS_DATE, 12)
    head.writeUInt32LE(crc32(data), 14)
    head.writeUInt32LE(data.length, 18)
    head.writeUInt32LE(data.length, 22)
    head.writeUInt16LE(nameBytes.length, 26)
    head.writeUInt16LE(0, 28)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(20, 4) // made by: MS-DOS, so no Unix permission bits
    head.copy(central, 6, 4, 30) // version needed .. name length, as in the local header
    central.writeUInt32LE(offset, 42)
    locals.push(head, nameBytes, data)
    centrals.push(central, nameBytes)
    offset += head.length + nameBytes.length + data.length
  }
  const directory = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(entries.size, 8)
  end.writeUInt16LE(entries.size, 10)
  end.writeUInt32LE(directory.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, directory, end])
}

function build() {
  const out = option('--out')[0] || path.join(__dirname, 'dist', 'stepwatch-extension.zip')
  const entries = contents(option('--origin'))
  fs.mkdirSync(path.dirname(out), { recursive: true })
  fs.writeFileSync(out, zip(entries))
  const unpacked = option('--unpacked')[0]
  if (unpacked) {
    fs.rmSync(unpacked, { recursive: true, force: true })
    for (const [name, data] of entries) {
      fs.mkdirSync(path.dirname(path.join(unpacked, name)), { recursive: true })
      fs.writeFileSync(path.join(unpacked, name), data)
    }
  }
  console.log(`${path.relative(process.cwd(), out)}: ${entries.size} files, ${fs.statSync(out).size} bytes`)
}

try {
  build()
} catch (error) {
  console.error(error.message)
  process.exitCode = 1
}
