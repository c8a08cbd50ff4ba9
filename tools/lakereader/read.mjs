// read.mjs: an independent reader of Apache Iceberg tables for ehrsync's
// tests. It shares no code with ehrsync or iceberg-go: the Iceberg metadata
// (JSON) is read here, manifest lists and manifests (Avro) are decoded by
// avsc, and the Parquet data files are read by DuckDB (@duckdb/node-api).
//
// Usage: node read.mjs <metadata location>
//   The location of the table's metadata.json: a path, a file:// URL or an
//   http(s):// URL. Files the metadata points to may be file:// URLs, paths
//   or http(s):// URLs (those are downloaded to a temporary folder first).
//
// Output: one JSON object per row (JSON lines) on stdout, keyed by the
// current schema's column names, in manifest order then file order. Values,
// by Iceberg type:
//   int, long           number; a decimal string when |v| > 2^53-1
//   decimal(P,S)        exact string with S digits after the point: "123.45",
//                       "-0.01", "0.00"
//   timestamp           integer microseconds of the stored wall-clock value
//                       counted from 1970-01-01T00:00:00 (no zone applied);
//                       number, or a decimal string when |v| > 2^53-1
//   timestamptz         integer microseconds since the Unix epoch (UTC);
//                       same number/string rule
//   date                "YYYY-MM-DD" (proleptic Gregorian)
//   uuid                canonical lowercase "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
//   binary, fixed[N]    lowercase hex ("" for an empty value)
//   string              the string as is
//   boolean             true / false
//   float, double       number
//   null                null (also for a column missing from a data file,
//                       that is one added to the schema after the file)
// Nested types (struct, list, map) and other types fail the read.
//
// Iceberg semantics honoured: only the current snapshot (metadata
// "current-snapshot-id"); its manifest list; entries with status DELETED (2)
// skipped; Parquet columns matched to the current schema by field id (not by
// name). Delete files are NOT applied: a snapshot with a delete manifest or
// a delete file fails the read (ehrsync writes none). Snapshot ids are
// compared as parsed by JSON.parse (doubles), the same way on both sides.
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import avro from 'avsc'
import { DuckDBInstance } from '@duckdb/node-api'

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

function fail(msg) {
  process.stderr.write(`read.mjs: ${msg}\n`)
  process.exit(1)
}

const isHTTP = loc => /^https?:\/\//i.test(loc)

// readBytes returns the contents of a path, file:// or http(s):// location.
async function readBytes(loc) {
  if (isHTTP(loc)) {
    const res = await fetch(loc)
    if (!res.ok) throw new Error(`GET ${loc}: ${res.status}`)
    return Buffer.from(await res.arrayBuffer())
  }
  return readFile(localPath(loc))
}

function localPath(loc) {
  if (loc.startsWith('file:')) return fileURLToPath(loc)
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(loc)) throw new Error(`unsupported location scheme: ${loc}`)
  return loc
}

// Avro longs as BigInt: snapshot ids and sizes exceed 2^53.
const bigLong = avro.types.LongType.__with({
  fromBuffer: buf => buf.readBigInt64LE(),
  toBuffer: n => { const b = Buffer.alloc(8); b.writeBigInt64LE(BigInt(n)); return b },
  fromJSON: BigInt,
  toJSON: Number,
  isValid: n => typeof n === 'bigint',
  compare: (a, b) => (a < b ? -1 : a > b ? 1 : 0),
})

// readAvro decodes an Avro object container file into its records.
async function readAvro(loc) {
  const bytes = await readBytes(loc)
  return new Promise((resolve, reject) => {
    const records = []
    const dec = new avro.streams.BlockDecoder({
      parseHook: schema => avro.Type.forSchema(schema, { registry: { long: bigLong } }),
    })
    dec.on('data', r => records.push(r))
    dec.on('error', reject)
    dec.on('end', () => resolve(records))
    dec.end(bytes)
  })
}

function intOut(v) {
  const b = BigInt(v)
  return b > MAX_SAFE || b < -MAX_SAFE ? b.toString() : Number(b)
}

function decimalOut(unscaled, scale) {
  const neg = unscaled < 0n
  let digits = (neg ? -unscaled : unscaled).toString()
  if (scale > 0) {
    digits = digits.padStart(scale + 1, '0')
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`
  }
  return (neg ? '-' : '') + digits
}

function dateOut(days) {
  // Proleptic Gregorian civil date from days since 1970-01-01 (Howard
  // Hinnant's days_from_civil inverse), exact for any int32 day.
  let z = BigInt(days) + 719468n
  const era = (z >= 0n ? z : z - 146096n) / 146097n
  const doe = z - era * 146097n
  const yoe = (doe - doe / 1460n + doe / 36524n - doe / 146096n) / 365n
  let y = yoe + era * 400n
  const doy = doe - (365n * yoe + yoe / 4n - yoe / 100n)
  const mp = (5n * doy + 2n) / 153n
  const d = doy - (153n * mp + 2n) / 5n + 1n
  const m = mp < 10n ? mp + 3n : mp - 9n
  if (m <= 2n) y += 1n
  const pad = (n, w) => n.toString().padStart(w, '0')
  const ys = y < 0n ? `-${pad(-y, 4)}` : pad(y, 4)
  return `${ys}-${pad(m, 2)}-${pad(d, 2)}`
}

const hex = bytes => Buffer.from(bytes).toString('hex')

// encoder returns the function that turns a DuckDB value of a column of
// Iceberg type t into its JSON value.
function encoder(t, name) {
  if (typeof t !== 'string') fail(`column ${name}: nested type not supported`)
  let m
  if (t === 'int' || t === 'long') return v => intOut(v)
  if ((m = /^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$/.exec(t))) {
    const scale = Number(m[2])
    return v => {
      if (v.scale !== scale) fail(`column ${name}: Parquet scale ${v.scale}, Iceberg scale ${scale}`)
      return decimalOut(BigInt(v.value), scale)
    }
  }
  if (t === 'timestamp' || t === 'timestamptz') return v => intOut(v.micros)
  if (t === 'date') return v => dateOut(v.days)
  if (t === 'uuid') return v => v.toString().toLowerCase()
  if (t === 'binary' || /^fixed\[\d+\]$/.test(t)) return v => hex(v.bytes)
  if (t === 'string') return v => v
  if (t === 'boolean') return v => v
  if (t === 'float' || t === 'double') return v => v
  fail(`column ${name}: Iceberg type ${t} not supported`)
}

const sqlString = s => `'${s.replaceAll("'", "''")}'`
const sqlIdent = s => `"${s.replaceAll('"', '""')}"`

async function main() {
  const loc = process.argv[2]
  if (!loc) fail('usage: node read.mjs <metadata.json location>')
  const meta = JSON.parse((await readBytes(loc)).toString('utf8'))
  if (meta['format-version'] !== 1 && meta['format-version'] !== 2) {
    fail(`format version ${meta['format-version']} not supported`)
  }
  const schema = meta.schemas.find(s => s['schema-id'] === meta['current-schema-id'])
  if (!schema) fail('current schema not found')
  const snapId = meta['current-snapshot-id']
  if (snapId === undefined || snapId === null || snapId === -1) return // no snapshot: no rows
  const snap = meta.snapshots.find(s => s['snapshot-id'] === snapId)
  if (!snap) fail('current snapshot not found')
  if (!snap['manifest-list']) fail('snapshot without a manifest list (v1 inline manifests) not supported')

  // Data files of the current snapshot, in manifest order.
  const dataFiles = []
  for (const mf of await readAvro(snap['manifest-list'])) {
    const content = mf.content ?? 0
    if (content !== 0) fail('delete manifests are not supported (the table has row-level deletes)')
    for (const entry of await readAvro(mf.manifest_path)) {
      if (entry.status === 2) continue // DELETED
      const df = entry.data_file
      if ((df.content ?? 0) !== 0) fail('delete files are not supported')
      if (String(df.file_format).toUpperCase() !== 'PARQUET') fail(`data file format ${df.file_format} not supported`)
      dataFiles.push({ path: df.file_path, records: BigInt(df.record_count) })
    }
  }

  const db = await DuckDBInstance.create(':memory:')
  const conn = await db.connect()
  const encoders = schema.fields.map(f => encoder(f.type, f.name))
  const tmp = dataFiles.some(f => isHTTP(f.path)) ? await mkdtemp(join(tmpdir(), 'lakereader-')) : null
  try {
    for (const [i, f] of dataFiles.entries()) {
      let path
      if (isHTTP(f.path)) {
        path = join(tmp, `${i}.parquet`)
        await writeFile(path, await readBytes(f.path))
      } else {
        path = localPath(f.path)
      }
      // Top-level Parquet columns by Iceberg field id.
      const ps = await conn.runAndReadAll(
        `SELECT name, field_id FROM parquet_schema(${sqlString(path)}) WHERE field_id IS NOT NULL`)
      const byID = new Map()
      for (const [name, fieldID] of ps.getRows()) byID.set(Number(fieldID), name)
      const select = schema.fields.map((fld, c) =>
        byID.has(fld.id) ? `${sqlIdent(byID.get(fld.id))} AS c${c}` : `NULL AS c${c}`)
      const res = await conn.runAndReadAll(`SELECT ${select.join(', ')} FROM read_parquet(${sqlString(path)})`)
      const rows = res.getRows()
      if (BigInt(rows.length) !== f.records) {
        fail(`data file ${i}: ${rows.length} rows, manifest says ${f.records}`)
      }
      const out = []
      for (const row of rows) {
        const obj = {}
        schema.fields.forEach((fld, c) => {
          const v = row[c]
          obj[fld.name] = v === null || v === undefined ? null : encoders[c](v)
        })
        out.push(JSON.stringify(obj))
      }
      if (out.length) process.stdout.write(out.join('\n') + '\n')
    }
  } finally {
    conn.closeSync?.()
    if (tmp) await rm(tmp, { recursive: true, force: true })
  }
}

main().catch(err => fail(err?.stack ?? String(err)))
