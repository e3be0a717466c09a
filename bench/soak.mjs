#!/usr/bin/env node
// The soak (issue 6, item 5; not in CI): two whole nodes on loopback chat at a steady rate
// for a long time under background junk traffic, and their memory must stay flat.
//
//   node bench/soak.mjs                     # one hour
//   node bench/soak.mjs --minutes 5         # a short run
//   options: --rate N (secure messages a second, each way; 5), --sample-seconds S (10),
//            --tolerance P (percent; 10), --junk off, --csv FILE (also write the CSV there)
//
// alice and bob are bench/drivers/soak-node.ts (bundled into dist/bench/, run with
// --expose-gc): each is nodeRole bound to 127.0.0.1 on OS-chosen ports; they find each
// other by presence (alice announces to bob's UDP port, bob answers by unicast; both
// announce every 2 s) and each sends the other `--rate` secure messages a second with
// Initiator.send, one at a time. Every sample period each reports its RSS and its heap
// after a forced GC (what it retains), plus its counters.
//
// Junk, every second, from 127.0.0.9 (another loopback address, so that the per-address
// presence limits that the junk trips do not touch the real peers on 127.0.0.1), to both
// nodes: TCP connections carrying bytes that are not JSON, a frame over 64 KiB, a frame of
// no known kind, a made-up Noise handshake message 1 (then hung up on), a silent connection
// and a slow-loris (both closed by the node's first-frame timeout, 10 s); UDP announcements
// of invented names and datagrams that are not JSON.
//
// At the end: a CSV (one row per sample: seconds, then RSS and heap in MB for each node,
// then counters) and a verdict per node and figure: flat when the mean of the last quarter
// of the samples is within --tolerance percent of the mean of the second quarter (the first
// quarter is warm-up). A figure that fell by more than that is reported as "shrank" and
// passes: the soak looks for growth (RSS drops when the allocator gives pages back).
// Exit code 0 when no figure grew beyond the tolerance and no message failed, 1 if not.
//
// Loopback only; every loop is bounded in count and time; every process and socket it
// started is closed when it ends, on error or on a signal included.
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { bundleDriver } from "./lib/build.mjs"
import { spawnTracked, stop, stopAll, waitFor } from "./lib/proc.mjs"

const { values: opt } = parseArgs({
  options: {
    minutes: { type: "string", default: "60" },
    rate: { type: "string", default: "5" },
    "sample-seconds": { type: "string", default: "10" },
    tolerance: { type: "string", default: "10" },
    junk: { type: "string", default: "on" },
    csv: { type: "string" }
  }
})
const MINUTES = Math.min(Math.max(Number(opt.minutes), 0.5), 24 * 60)
const SAMPLE_MS = Math.max(1, Number(opt["sample-seconds"])) * 1000
const TOLERANCE = Number(opt.tolerance)
const JUNK_FROM = "127.0.0.9"
const HOST = "127.0.0.1"

const log = (s) => process.stderr.write(`soak: ${s}\n`)
const dirs = []
const junkSockets = new Set()
let junkUdp
const junkCounts = { tcp: 0, closedByNode: 0, udp: 0 }

const cleanup = async () => {
  for (const s of junkSockets) s.destroy()
  junkSockets.clear()
  try {
    junkUdp?.close()
  } catch {
    // already closed
  }
  await stopAll()
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
}
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => {
    log(`${sig}: stopping`)
    cleanup().finally(() => process.exit(130))
  })
}

/** A UDP port on 127.0.0.1 that is free now (the OS's choice). */
const freeUdpPort = () =>
  new Promise((resolve) => {
    const s = dgram.createSocket("udp4")
    s.bind(0, HOST, () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

/** Starts one node driver; resolves with it once it reports its ports. */
const startNode = async (driver, name, peer, targetUdp, udpPort) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `p2pchat-soak-${name}-`))
  dirs.push(dataDir)
  const samples = []
  let ready
  let errors = []
  const args = ["--expose-gc", driver, "--name", name, "--peer", peer, "--data-dir", dataDir, "--rate", opt.rate,
    "--sample-ms", String(SAMPLE_MS)]
  if (targetUdp !== undefined) args.push("--target-udp", String(targetUdp))
  if (udpPort !== undefined) args.push("--udp-port", String(udpPort))
  const child = spawnTracked(process.execPath, args, {
    stdin: "pipe",
    onLine: (line) => {
      let m
      try {
        m = JSON.parse(line)
      } catch {
        return
      }
      if (m.event === "ready") ready = m
      else if (m.event === "sample") samples.push(m)
      else if (m.event === "error") errors.push(m.message)
    }
  })
  await waitFor(`${name} to start`, () => ready ?? (child.exitCode !== null ? Promise.reject(new Error(`${name} exited: ${child.stderrText}`)) : undefined), 30_000)
  return { name, child, ready, samples, errors }
}

// ---------------------------------------------------------------------------------------------
// Junk

const b64 = (bytes) => Buffer.from(bytes).toString("base64")
const randomName = () => `junk-${Math.random().toString(36).slice(2, 10)}`

/** One junk TCP connection: writes `payload` (or trickles it), destroyed after `lifeMs` at most. */
const junkConnection = (port, payload, { lifeMs = 15_000, trickleMs } = {}) => {
  const s = net.createConnection({ host: HOST, port, localAddress: JUNK_FROM })
  junkSockets.add(s)
  junkCounts.tcp++
  let ended = false
  s.on("error", () => {})
  s.on("data", () => {}) // drain whatever the node answers (a handshake message 2)
  s.on("close", () => {
    junkSockets.delete(s)
    if (!ended) junkCounts.closedByNode++
    clearInterval(trickle)
    clearTimeout(life)
  })
  let trickle
  const life = setTimeout(() => {
    ended = true
    s.destroy()
  }, lifeMs)
  s.once("connect", () => {
    if (payload === undefined) return
    if (trickleMs === undefined) {
      s.write(payload)
      return
    }
    let i = 0
    trickle = setInterval(() => {
      if (i < payload.length && !s.destroyed) s.write(payload[i++])
    }, trickleMs)
  })
}

const junkTick = (nodes) => {
  for (const n of nodes) {
    const tcp = n.ready.tcpPort
    junkConnection(tcp, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", { lifeMs: 2000 })
    junkConnection(tcp, `{"a":"${"x".repeat(70 * 1024)}"}`, { lifeMs: 2000 })
    junkConnection(tcp, `{"hello":"world"}\n`, { lifeMs: 2000 })
    junkConnection(tcp, JSON.stringify({ proto: "p2pchat/1", hs: b64(crypto.getRandomValues(new Uint8Array(32))) }) + "\n", {
      lifeMs: 500
    })
    junkConnection(tcp, undefined)
    junkConnection(tcp, `{"unencrypted_message":"${"A".repeat(200)}`, { trickleMs: 1000 })
    for (let i = 0; i < 10; i++) {
      const ann = JSON.stringify({ username: randomName(), proto: "p2pchat/1", port: 6001 })
      junkUdp.send(ann, n.ready.udpPort, HOST)
      junkCounts.udp++
    }
    for (let i = 0; i < 5; i++) {
      junkUdp.send(crypto.getRandomValues(new Uint8Array(64)), n.ready.udpPort, HOST)
      junkCounts.udp++
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Verdict

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length
const MB = 1048576

const verdictOf = (samples, field) => {
  const q = Math.floor(samples.length / 4)
  if (q < 1) return { field, flat: false, note: "too few samples" }
  const second = mean(samples.slice(q, 2 * q).map((s) => s[field] / MB))
  const last = mean(samples.slice(samples.length - q).map((s) => s[field] / MB))
  const change = ((last - second) / second) * 100
  return { field, second, last, change, flat: change <= TOLERANCE, shrank: change < -TOLERANCE }
}

// ---------------------------------------------------------------------------------------------

const main = async () => {
  log(`building the node driver`)
  const driver = await bundleDriver("soak-node")
  // Each announces to the other (no broadcast on loopback): alice's presence port is
  // chosen first, so that bob can target it. Without that, alice heard bob only once (his
  // answer to a newcomer) and bob expired from her registry after 15 minutes.
  const aliceUdp = await freeUdpPort()
  const bob = await startNode(driver, "bob", "alice", aliceUdp)
  const alice = await startNode(driver, "alice", "bob", bob.ready.udpPort, aliceUdp)
  const nodes = [alice, bob]
  log(`alice tcp ${alice.ready.tcpPort}, bob tcp ${bob.ready.tcpPort}; ${MINUTES} min at ${opt.rate} msg/s each way` +
    `, junk ${opt.junk}; sampling every ${SAMPLE_MS / 1000} s`)

  if (opt.junk !== "off") {
    junkUdp = dgram.createSocket("udp4")
    await new Promise((resolve) => junkUdp.bind(0, JUNK_FROM, resolve))
  }
  const t0 = Date.now()
  const endAt = t0 + MINUTES * 60_000
  let lastReport = t0
  while (Date.now() < endAt) {
    if (opt.junk !== "off") junkTick(nodes)
    await new Promise((r) => setTimeout(r, 1000))
    for (const n of nodes) {
      if (n.child.exitCode !== null) throw new Error(`${n.name} exited early: ${n.child.stderrText.slice(-2000)}`)
    }
    if (Date.now() - lastReport >= 60_000) {
      lastReport = Date.now()
      const s = nodes.map((n) => n.samples.at(-1)).map((x, i) =>
        x === undefined ? "" : `${nodes[i].name} rss ${(x.rss / MB).toFixed(1)} heap ${(x.heapUsed / MB).toFixed(1)} ` +
          `(committed ${(x.heapTotal / MB).toFixed(1)}) external ${(x.external / MB).toFixed(1)} MB, ` +
          `${x.delivered}/${x.sent} delivered`
      )
      log(`${Math.round((Date.now() - t0) / 60_000)} min: ${s.join("; ")}; junk tcp ${junkCounts.tcp}, udp ${junkCounts.udp}`)
    }
  }
  for (const s of junkSockets) s.destroy()
  // the last sample: taken by each node as it stops
  await Promise.all(nodes.map((n) => stop(n.child, 10_000)))

  // CSV
  const rows = Math.min(alice.samples.length, bob.samples.length)
  const header = "seconds,alice_rss_mb,alice_heap_mb,bob_rss_mb,bob_heap_mb,alice_delivered,alice_failed,bob_delivered," +
    "bob_failed,alice_received,bob_received,alice_rejected,bob_rejected,alice_peers,bob_peers"
  const lines = [header]
  for (let i = 0; i < rows; i++) {
    const a = alice.samples[i]
    const b = bob.samples[i]
    lines.push([
      a.t,
      (a.rss / MB).toFixed(1),
      (a.heapUsed / MB).toFixed(2),
      (b.rss / MB).toFixed(1),
      (b.heapUsed / MB).toFixed(2),
      a.delivered,
      a.failed,
      b.delivered,
      b.failed,
      a.received,
      b.received,
      a.rejected,
      b.rejected,
      a.peers,
      b.peers
    ].join(","))
  }
  const csv = lines.join("\n") + "\n"
  process.stdout.write(csv)
  if (opt.csv) fs.writeFileSync(opt.csv, csv)

  // verdict (the final sample, taken while stopping, is left out: it is not steady state)
  let ok = true
  process.stdout.write(`\nverdict (${MINUTES} min, tolerance ${TOLERANCE}%: last-quarter mean vs second-quarter mean)\n`)
  for (const n of nodes) {
    const steady = n.samples.slice(0, -1)
    for (const field of ["rss", "heapUsed"]) {
      const v = verdictOf(steady, field)
      ok &&= v.flat
      process.stdout.write(
        v.second === undefined
          ? `  ${n.name} ${field}: ${v.note}\n`
          : `  ${n.name} ${field}: ${v.second.toFixed(2)} MB -> ${v.last.toFixed(2)} MB (${v.change >= 0 ? "+" : ""}` +
            `${v.change.toFixed(1)}%) ${v.shrank ? "shrank" : v.flat ? "flat" : "NOT FLAT (grew)"}\n`
      )
    }
    const last = n.samples.at(-1)
    if (last !== undefined) {
      if (last.failed > 0) ok = false
      process.stdout.write(
        `  ${n.name}: ${last.delivered} of ${last.sent} messages delivered, ${last.failed} failed` +
          `${last.failed > 0 ? ` (last: ${last.lastError})` : ""}; received ${last.received}; ` +
          `rejected connections ${last.rejected}; limits ${JSON.stringify(last.limits)}; peers ${last.peers}; ` +
          `datagrams rejected ${last.datagramsRejected}\n`
      )
    }
    if (n.errors.length > 0) {
      ok = false
      process.stdout.write(`  ${n.name} errors: ${n.errors.join("; ")}\n`)
    }
  }
  process.stdout.write(
    `  junk: ${junkCounts.tcp} TCP connections (${junkCounts.closedByNode} closed by the nodes), ${junkCounts.udp} datagrams\n`
  )
  process.stdout.write(`  ${ok ? "FLAT" : "NOT FLAT (or messages failed)"}\n`)
  return ok
}

main().then(
  async (ok) => {
    await cleanup()
    process.exit(ok ? 0 : 1)
  },
  async (e) => {
    log(`failed: ${e?.stack ?? e}`)
    await cleanup()
    process.exit(2)
  }
)
