// Noise XX handshakes per second against one responder (p2pchat's or the baseline's, the
// same client for both). Each handshake is a new TCP connection: message 1, message 2
// (checked: it must decrypt and name the responder), message 3, then the client half-closes
// and waits for the responder to close. The responder closes only after it has read
// message 3 and the end of the stream, so a handshake counts once the responder has
// processed all of it (including its trust-on-first-use check).
//
//   node bench/clients/handshake.mjs --port P [--seconds 3 --runs 3 --concurrency 16]
// Prints {"runs": [handshakes/s, ...], "failed": N}.
import * as net from "node:net"
import { parseArgs } from "node:util"
import { frameReader } from "../lib/frames.mjs"
import { generateKeyPair, PROLOGUE, XX } from "../lib/noise.mjs"

const { values: opt } = parseArgs({
  options: {
    port: { type: "string" },
    name: { type: "string", default: "hsclient" },
    seconds: { type: "string", default: "3" },
    runs: { type: "string", default: "3" },
    concurrency: { type: "string", default: "16" },
    "timeout-ms": { type: "string", default: "10000" }
  }
})
const port = Number(opt.port)
const identity = generateKeyPair()
const payload3 = Buffer.from(JSON.stringify({ username: opt.name }))
let failed = 0
let lastError = ""

const handshake = () =>
  new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port, noDelay: true })
    const io = frameReader(s)
    let sent3 = false
    let broken = false
    const timer = setTimeout(() => {
      broken = true
      lastError = "timeout"
      s.destroy()
    }, Number(opt["timeout-ms"]))
    s.on("error", (e) => {
      broken = true
      lastError = e.message
    })
    s.on("close", () => {
      clearTimeout(timer)
      resolve(sent3 && !broken)
    })
    s.on("connect", async () => {
      try {
        const hs = new XX({ initiator: true, prologue: PROLOGUE, s: identity })
        io.write({ proto: "p2pchat/1", hs: hs.write1().toString("base64") })
        const m2 = await io.next()
        const who = JSON.parse(hs.read2(Buffer.from(m2.hs, "base64")).toString("utf8"))
        if (typeof who.username !== "string") throw new Error("message 2 names no responder")
        io.write({ hs: hs.write3(payload3).toString("base64") })
        sent3 = true
        s.end() // the responder closes once it has read message 3 and this end
      } catch (e) {
        lastError = e.message
        broken = true
        s.destroy()
      }
    })
  })

const runs = []
for (let r = 0; r < Number(opt.runs); r++) {
  const t0 = performance.now()
  const until = t0 + Number(opt.seconds) * 1000
  let done = 0
  const worker = async () => {
    while (performance.now() < until) {
      const ok = await handshake()
      if (!ok) failed++
      else if (performance.now() <= until) done++
    }
  }
  await Promise.all(Array.from({ length: Number(opt.concurrency) }, worker))
  runs.push(done / Number(opt.seconds))
}
console.log(JSON.stringify({ runs, failed, lastError }))
process.exit(0)
