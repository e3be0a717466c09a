// The baseline responder: the smallest plain Node program doing the responder's job.
// node:net, compact JSON + "\n" frames, Noise XX then ChaCha20-Poly1305 per message (or
// plain p2pchat/1 frames), one prepared INSERT per message into a `messages` table like
// p2pchat's, with the same SQLite settings, and the ack written after the insert.
//
//   node bench/baseline/server.mjs --db DIR [--name bob] [--quiet]
// Prints {"listening": PORT} (127.0.0.1, port chosen by the OS), then one line per message
// received (as a chat responder shows it; --quiet turns that off).
import { randomUUID } from "node:crypto"
import * as net from "node:net"
import { parseArgs } from "node:util"
import { onFrames } from "../lib/frames.mjs"
import { generateKeyPair, PROLOGUE, XX } from "../lib/noise.mjs"
import { openDb } from "./db.mjs"

const { values: opt } = parseArgs({
  options: { db: { type: "string" }, name: { type: "string", default: "bob" }, quiet: { type: "boolean", default: false } }
})
const store = openDb(opt.db)
const identity = generateKeyPair()
const hello = Buffer.from(JSON.stringify({ username: opt.name }))
const show = (from, text, mode) => {
  if (!opt.quiet) process.stdout.write(JSON.stringify({ event: "message", from, text, mode }) + "\n")
}

const serve = (socket) => {
  socket.setNoDelay(true)
  const send = (obj) => socket.write(JSON.stringify(obj) + "\n")
  let state = "first"
  let hs
  let peer
  let transport
  onFrames(socket, (f) => {
    try {
      if (state === "first" && typeof f.hs === "string") {
        if (f.proto !== "p2pchat/1") return socket.destroy()
        hs = new XX({ initiator: false, prologue: PROLOGUE, s: identity })
        hs.read1(Buffer.from(f.hs, "base64"))
        send({ hs: hs.write2(hello).toString("base64") })
        state = "hs3"
      } else if (state === "hs3") {
        const payload = JSON.parse(hs.read3(Buffer.from(f.hs, "base64")).toString("utf8"))
        peer = String(payload.username).toLowerCase()
        if (!store.trust(peer, hs.rs)) return socket.destroy()
        transport = hs.split()
        hs = undefined
        state = "secure"
      } else if (state === "secure") {
        const inner = JSON.parse(transport.recv.decrypt(Buffer.alloc(0), Buffer.from(f.ct, "base64")).toString("utf8"))
        if (inner.type !== "msg") return socket.destroy()
        if (store.received(inner.id, peer, inner.text, "noise")) show(peer, inner.text, "noise")
        const ack = Buffer.from(JSON.stringify({ type: "ack", id: inner.id }))
        send({ ct: transport.send.encrypt(Buffer.alloc(0), ack).toString("base64") })
      } else if (typeof f.unencrypted_message === "string") {
        state = "plain"
        const text = Buffer.from(f.unencrypted_message, "base64").toString("utf8")
        const from = typeof f.from === "string" ? f.from.toLowerCase() : `unknown (${socket.remoteAddress})`
        if (store.received(f.id ?? randomUUID(), from, text, "plain")) show(from, text, "plain")
        if (f.id !== undefined) send({ ack: f.id })
      } else {
        socket.destroy()
      }
    } catch {
      socket.destroy() // a frame that does not decrypt or parse ends the connection
    }
  })
  socket.on("error", () => {})
}

const server = net.createServer(serve)
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ listening: server.address().port }) + "\n")
})
const shutdown = () => {
  server.close()
  store.close()
  process.exit(0)
}
process.on("SIGTERM", shutdown)
process.on("SIGINT", shutdown)
