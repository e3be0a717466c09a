// Concurrent connections against one responder (p2pchat's or the baseline's, the same
// client for both): N connections opened at once, each sends one plain p2pchat/1 message
// and waits for its ack, and none is closed until all N are done. Levels are tried in
// order and the run stops at the first level that loses a message.
//
//   node bench/clients/connections.mjs --port P [--levels 250,500,1000,2000] [--timeout-ms 30000]
// Prints {"max": highest level with every message acked, "levels": [{n, acked, lost, ms}]}.
import { randomUUID } from "node:crypto"
import * as net from "node:net"
import { parseArgs } from "node:util"
import { KIB_TEXT, onFrames } from "../lib/frames.mjs"

const { values: opt } = parseArgs({
  options: {
    port: { type: "string" },
    levels: { type: "string", default: "250,500,1000,2000" },
    name: { type: "string", default: "conn" },
    "timeout-ms": { type: "string", default: "30000" }
  }
})
const port = Number(opt.port)
const timeoutMs = Number(opt["timeout-ms"])
const text = Buffer.from(KIB_TEXT).toString("base64")

const level = (n) =>
  new Promise((resolve) => {
    const t0 = performance.now()
    const sockets = []
    let connected = 0
    let acked = 0
    let lost = 0
    let done = false
    const finish = () => {
      if (done) return
      done = true
      clearTimeout(timer)
      for (const s of sockets) s.destroy()
      resolve({ n, acked, lost, ms: Math.round(performance.now() - t0) })
    }
    const check = () => {
      if (acked + lost === n) finish()
    }
    const timer = setTimeout(finish, timeoutMs)
    const sendAll = () => {
      for (const s of sockets) {
        if (s.destroyed) continue
        s.write(JSON.stringify({ unencrypted_message: text, id: s.messageId, from: opt.name }) + "\n")
      }
    }
    for (let i = 0; i < n; i++) {
      const s = net.connect({ host: "127.0.0.1", port, noDelay: true })
      s.messageId = randomUUID()
      s.state = "connecting"
      sockets.push(s)
      s.on("connect", () => {
        s.state = "open"
        // Every connection is open before any message is sent: all N are open at once.
        if (++connected === n) sendAll()
      })
      onFrames(s, (f) => {
        if (f.ack === s.messageId && s.state === "open") {
          s.state = "acked"
          acked++
          check()
        }
      })
      const gone = () => {
        if (done || s.state === "acked" || s.state === "lost") return
        const wasConnecting = s.state === "connecting"
        s.state = "lost"
        lost++
        if (wasConnecting && connected + lost === n) sendAll()
        check()
      }
      s.on("error", gone)
      s.on("close", gone)
    }
  })

const levels = []
let max = 0
for (const n of opt.levels.split(",").map(Number)) {
  const r = await level(n)
  levels.push(r)
  if (r.acked !== n) break
  max = n
  await new Promise((res) => setTimeout(res, 200)) // let the responder close the last level's connections
}
console.log(JSON.stringify({ max, levels }))
process.exit(0)
