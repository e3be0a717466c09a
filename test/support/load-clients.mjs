// Junk and load connections against one responder on loopback, run as a child process so
// that its sockets neither share the responder's event loop nor its file descriptor limit
// (test/integration/limits.test.ts starts it under `ulimit -n` raised where the hard limit
// allows). Plain node:net, no p2pchat code.
//
//   node test/support/load-clients.mjs '{"port": 6001, "slow": 500, "frames": 1000, "holdMs": 30000}'
//
// 1. opens `slow` connections: half send half a frame and stop, half send nothing;
// 2. then opens `frames` connections at once, each sending one plain p2pchat/1 frame with an
//    id and waiting for its ack;
// 3. holds every connection open until stdin closes or holdMs passes, then closes them all.
// Writes one JSON line per event to stdout: {"event":"slow-open","n":...},
// {"event":"acked","n":...,"lost":...,"p99":...}, {"event":"status",...}, {"event":"done",...}.
// Every loop is bounded in count and time; on any exit every socket is destroyed.
import * as net from "node:net"

const opts = JSON.parse(process.argv[2] ?? "{}")
const port = Number(opts.port)
const host = "127.0.0.1"
const SLOW = Math.min(Number(opts.slow ?? 500), 20_000)
const FRAMES = Math.min(Number(opts.frames ?? 1000), 20_000)
const HOLD_MS = Math.min(Number(opts.holdMs ?? 30_000), 120_000)
const CONNECT_TIMEOUT_MS = 10_000

const sockets = new Set()
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n")
let closedByServer = { slow: 0, frames: 0 }
let ending = false

const connect = (kind) =>
  new Promise((resolve) => {
    const s = net.createConnection({ host, port })
    sockets.add(s)
    const timer = setTimeout(() => {
      s.destroy()
      resolve(undefined)
    }, CONNECT_TIMEOUT_MS)
    s.on("error", () => {})
    s.on("close", () => {
      sockets.delete(s)
      clearTimeout(timer)
      if (!ending) closedByServer[kind]++
      resolve(undefined)
    })
    s.once("connect", () => {
      clearTimeout(timer)
      resolve(s)
    })
  })

const b64 = (t) => Buffer.from(t, "utf8").toString("base64")

const percentile = (xs, p) => {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}

const shutdown = (why) => {
  if (ending) return
  ending = true
  for (const s of sockets) s.destroy()
  say({ event: "done", why, closedByServer })
  setTimeout(() => process.exit(0), 50)
}

const main = async () => {
  // 1. slow connections, opened in batches of 100
  let slowOpen = 0
  for (let i = 0; i < SLOW; i += 100) {
    const batch = await Promise.all(Array.from({ length: Math.min(100, SLOW - i) }, () => connect("slow")))
    batch.forEach((s, j) => {
      if (s === undefined) return
      slowOpen++
      // half a frame, never finished (a slow-loris that stopped), or nothing at all
      if ((i + j) % 2 === 0) s.write(`{"unencrypted_message":"${b64("never finished")}","id":"slow-${i + j}",`)
    })
  }
  say({ event: "slow-open", n: slowOpen })

  // 2. frame connections, all at once: one frame each, then wait for its ack
  const latencies = []
  let lost = 0
  await Promise.all(Array.from({ length: FRAMES }, async (_, i) => {
    const s = await connect("frames")
    if (s === undefined) {
      lost++
      return
    }
    const id = `load-${process.pid}-${i}`
    const t0 = performance.now()
    await new Promise((resolve) => {
      let got = ""
      const timer = setTimeout(() => {
        lost++
        resolve()
      }, 15_000)
      s.on("data", (d) => {
        got += d.toString("utf8")
        if (got.includes(`{"ack":"${id}"}`)) {
          clearTimeout(timer)
          latencies.push(performance.now() - t0)
          resolve()
        }
      })
      s.on("close", () => {
        clearTimeout(timer)
        if (!got.includes(id)) lost++
        resolve()
      })
      s.write(JSON.stringify({ unencrypted_message: b64(`load message ${i}`), id, from: "loader" }) + "\n")
    })
  }))
  say({ event: "acked", n: latencies.length, lost, p99: percentile(latencies, 99), max: percentile(latencies, 100) })

  // 3. hold
  const status = setInterval(() => say({ event: "status", open: sockets.size, closedByServer }), 1000)
  status.unref()
  setTimeout(() => shutdown("hold time over"), HOLD_MS).unref()
  await new Promise(() => {})
}

process.stdin.on("end", () => shutdown("stdin closed"))
process.stdin.on("close", () => shutdown("stdin closed"))
process.stdin.resume()
process.on("SIGTERM", () => shutdown("SIGTERM"))
main().catch((e) => {
  say({ event: "error", message: String(e?.stack ?? e) })
  shutdown("error")
})
