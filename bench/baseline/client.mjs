// The baseline sender: one connection, one message at a time (send, wait for the ack, next),
// as p2pchat's Initiator sends. Like p2pchat's sender it keeps its own history: the message
// is stored as pending before it is sent and marked delivered when the ack arrives.
//
//   node bench/baseline/client.mjs --port P --db DIR --mode secure|plain
//        [--seconds S --runs R --warmup W]            throughput: messages/s per run
//        [--rate 200 --count N --runs R]              latency: p99 ms per run (paced)
// Prints one JSON line: {"runs": [...], "unit": "msg/s" | "ms", ...}.
import { randomUUID } from "node:crypto"
import * as net from "node:net"
import { parseArgs } from "node:util"
import { frameReader, KIB_TEXT } from "../lib/frames.mjs"
import { generateKeyPair, PROLOGUE, XX } from "../lib/noise.mjs"
import { percentile } from "../lib/stats.mjs"
import { openDb } from "./db.mjs"

const { values: opt } = parseArgs({
  options: {
    port: { type: "string" },
    db: { type: "string" },
    mode: { type: "string", default: "secure" },
    name: { type: "string", default: "alice" },
    peer: { type: "string", default: "bob" },
    seconds: { type: "string", default: "3" },
    runs: { type: "string", default: "3" },
    warmup: { type: "string", default: "100" },
    rate: { type: "string" },
    count: { type: "string", default: "600" }
  }
})
const secure = opt.mode === "secure"
const store = openDb(opt.db)
const socket = net.connect({ host: "127.0.0.1", port: Number(opt.port), noDelay: true })
await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject))
const io = frameReader(socket)

let transport
if (secure) {
  const hs = new XX({ initiator: true, prologue: PROLOGUE, s: generateKeyPair() })
  io.write({ proto: "p2pchat/1", hs: hs.write1().toString("base64") })
  const payload = JSON.parse(hs.read2(Buffer.from((await io.next()).hs, "base64")).toString("utf8"))
  if (!store.trust(String(payload.username).toLowerCase(), hs.rs)) throw new Error("key changed")
  io.write({ hs: hs.write3(Buffer.from(JSON.stringify({ username: opt.name }))).toString("base64") })
  transport = hs.split()
}
const NO_AD = Buffer.alloc(0)

/** Sends one message and resolves once it is acked (and marked delivered). */
const sendOne = async (text) => {
  const id = randomUUID()
  store.sent(id, opt.peer, text, secure ? "noise" : "plain")
  if (secure) {
    const inner = JSON.stringify({ type: "msg", id, text, sentAt: new Date().toISOString() })
    io.write({ ct: transport.send.encrypt(NO_AD, Buffer.from(inner)).toString("base64") })
    const ack = JSON.parse(transport.recv.decrypt(NO_AD, Buffer.from((await io.next()).ct, "base64")).toString("utf8"))
    if (ack.type !== "ack" || ack.id !== id) throw new Error(`unexpected answer ${JSON.stringify(ack)}`)
  } else {
    io.write({ unencrypted_message: Buffer.from(text).toString("base64"), id, from: opt.name })
    const ack = await io.next()
    if (ack.ack !== id) throw new Error(`unexpected answer ${JSON.stringify(ack)}`)
  }
  store.delivered(id, opt.peer)
}

const now = () => performance.now()
const runs = []
for (let i = 0; i < Number(opt.warmup); i++) await sendOne(KIB_TEXT)
if (opt.rate === undefined) {
  const limitMs = Number(opt.seconds) * 1000
  for (let r = 0; r < Number(opt.runs); r++) {
    const t0 = now()
    let n = 0
    while (now() - t0 < limitMs && n < 1_000_000) {
      await sendOne(KIB_TEXT)
      n++
    }
    runs.push(n / ((now() - t0) / 1000))
  }
  console.log(JSON.stringify({ runs, unit: "msg/s" }))
} else {
  // Paced: message i is due at t0 + i/rate; latency is from the call to send to the ack.
  // `late` counts messages sent more than one interval after they were due (the pacing
  // did not hold); run.mjs reports it.
  const interval = 1000 / Number(opt.rate)
  let late = 0
  for (let r = 0; r < Number(opt.runs); r++) {
    const lat = []
    const t0 = now() + 5
    for (let i = 0; i < Number(opt.count); i++) {
      const due = t0 + i * interval
      const wait = due - now()
      if (wait > 0) await new Promise((res) => setTimeout(res, wait))
      const start = now()
      if (start - due > interval) late++
      await sendOne(KIB_TEXT)
      lat.push(now() - start)
    }
    runs.push(percentile(lat, 99))
  }
  console.log(JSON.stringify({ runs, unit: "ms", late }))
}
socket.end()
store.close()
process.exit(0)
