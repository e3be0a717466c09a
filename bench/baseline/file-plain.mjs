// The plain-Node baseline of file-throughput: the smallest program doing what a p2pchat file
// transfer does, two processes on loopback, no framework.
//
//   node bench/baseline/file-plain.mjs receive --dir DIR --key HEX     prints {"listening": PORT}, then {"done": ...}
//   node bench/baseline/file-plain.mjs send --port PORT --file PATH --key HEX     prints {"start": true}, then {"sent": ...}
//
// The sender hashes the whole file first (SHA-256: what an offer must carry), connects, sends
// the file's name, size and hash, then the file in chunks of 65,510 bytes, p2pchat's chunk
// (src/domain/FileWire.ts CHUNK_BYTES: one Noise message of 65,535 bytes holds a 9-byte
// header and the chunk), each chunk with that header (kind, offset) encrypted with
// ChaCha20-Poly1305 under a counter nonce as a Noise transport message is, framed by a
// 2-byte length; it writes with backpressure (waits for 'drain'). The receiver decrypts each
// message, hashes the bytes as they come, writes them to NAME.part through a write stream
// (pausing the socket while the stream is full), and at the end fsyncs the file, checks the
// hash, renames the file into place, fsyncs the directory and tells the sender, encrypted.
// Both print their peak RSS (VmHWM). The key is given to both on the command line (one
// ChaCha20-Poly1305 key each way, as after a handshake; the handshake itself is not the
// subject here).
import { createCipheriv, createDecipheriv, createHash } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { CHUNK } from "./file-chunk.mjs"

const HEADER = 9
const TAG = 16

const { positionals, values: opt } = parseArgs({
  allowPositionals: true,
  options: {
    dir: { type: "string" },
    port: { type: "string" },
    file: { type: "string" },
    key: { type: "string" },
    host: { type: "string", default: "127.0.0.1" }
  }
})
const role = positionals[0]
if (opt.key === undefined || !/^[0-9a-f]{64}$/.test(opt.key)) throw new Error("--key: 64 hex digits")
const key = Buffer.from(opt.key, "hex")

const hwmMB = () => Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"))?.[1] ?? NaN) / 1024
const print = (o) => process.stdout.write(JSON.stringify(o) + "\n")

/** Noise's nonce: 4 zero bytes, then the 64-bit counter, little-endian. */
const nonceOf = (n) => {
  const b = Buffer.alloc(12)
  b.writeBigUInt64LE(BigInt(n), 4)
  return b
}

/** One direction of an encrypted stream of messages (`parts` are encrypted as one plaintext). */
const sealer = () => {
  let n = 0
  return (...parts) => {
    const c = createCipheriv("chacha20-poly1305", key, nonceOf(n++), { authTagLength: TAG })
    const body = parts.map((p) => c.update(p))
    body.push(c.final(), c.getAuthTag())
    const length = body.reduce((s, b) => s + b.length, 0)
    const prefix = Buffer.alloc(2)
    prefix.writeUInt16BE(length)
    return Buffer.concat([prefix, ...body], length + 2)
  }
}
const opener = () => {
  let n = 0
  return (message) => {
    const d = createDecipheriv("chacha20-poly1305", key, nonceOf(n++), { authTagLength: TAG })
    d.setAuthTag(message.subarray(message.length - TAG))
    const plain = d.update(message.subarray(0, message.length - TAG))
    d.final()
    return plain
  }
}

/** Calls `onMessage` with each whole message (its 2-byte length removed) as the socket delivers them. */
const messages = (socket, onMessage) => {
  let pending = []
  let have = 0
  socket.on("data", (data) => {
    pending.push(data)
    have += data.length
    while (have >= 2) {
      let buf = pending.length === 1 ? pending[0] : Buffer.concat(pending, have)
      const length = buf.readUInt16BE(0)
      if (have < length + 2) {
        pending = [buf]
        break
      }
      onMessage(buf.subarray(2, length + 2))
      buf = buf.subarray(length + 2)
      have = buf.length
      pending = have > 0 ? [buf] : []
    }
  })
}

const receive = () => {
  const dir = opt.dir
  const server = net.createServer((socket) => {
    server.close()
    socket.setNoDelay(true)
    const open = opener()
    const seal = sealer()
    const hash = createHash("sha256")
    let offer
    let part
    let stream
    let got = 0
    const finish = () =>
      stream.end(() => {
        fs.fsync(stream.fd, (e) => {
          if (e) throw e
          fs.closeSync(stream.fd)
          const sha256 = hash.digest("hex")
          if (sha256 !== offer.sha256) throw new Error(`hash mismatch: ${sha256}, offered ${offer.sha256}`)
          fs.renameSync(part, path.join(dir, offer.name))
          const d = fs.openSync(dir, "r")
          fs.fsyncSync(d)
          fs.closeSync(d)
          print({ done: true, bytes: got, hwmMB: hwmMB() })
          socket.end(seal(Buffer.from(JSON.stringify({ done: true }))))
        })
      })
    messages(socket, (message) => {
      const plain = open(message)
      if (offer === undefined) {
        offer = JSON.parse(plain.toString("utf8"))
        part = path.join(dir, `${offer.name}.part`)
        stream = fs.createWriteStream(part, { flags: "wx", highWaterMark: 1 << 20, autoClose: false })
        stream.on("error", (e) => {
          throw e
        })
        if (offer.size === 0) finish()
        return
      }
      if (plain[0] !== 1 || Number(plain.readBigUInt64BE(1)) !== got) throw new Error("data out of order")
      const bytes = plain.subarray(HEADER)
      hash.update(bytes)
      got += bytes.length
      if (!stream.write(bytes)) {
        socket.pause()
        stream.once("drain", () => socket.resume())
      }
      if (got === offer.size) finish()
    })
  })
  server.listen(0, opt.host, () => print({ listening: server.address().port }))
}

const send = async () => {
  print({ start: true })
  const file = opt.file
  const size = fs.statSync(file).size
  const hash = createHash("sha256")
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk)
  const sha256 = hash.digest("hex")
  const socket = net.connect({ host: opt.host, port: Number(opt.port), noDelay: true })
  await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject))
  const seal = sealer()
  const open = opener()
  const answered = new Promise((resolve) => messages(socket, (m) => resolve(JSON.parse(open(m).toString("utf8")))))
  socket.write(seal(Buffer.from(JSON.stringify({ name: path.basename(file), size, sha256 }))))
  let offset = 0
  const header = Buffer.alloc(HEADER)
  for await (const chunk of fs.createReadStream(file, { highWaterMark: CHUNK })) {
    header[0] = 1
    header.writeBigUInt64BE(BigInt(offset), 1)
    offset += chunk.length
    if (!socket.write(seal(header, chunk))) await new Promise((resolve) => socket.once("drain", resolve))
  }
  const answer = await answered
  if (answer.done !== true) throw new Error(`unexpected answer ${JSON.stringify(answer)}`)
  print({ sent: offset, hwmMB: hwmMB() })
  socket.end()
}

if (role === "receive") receive()
else if (role === "send") await send()
else throw new Error("usage: file-plain.mjs receive|send ...")
