// fsync-p99: what one durable SQLite commit costs on this disk, the floor under
// ack-latency-p99. Each commit is one INSERT of a 1 KiB message row in its own transaction,
// synchronous FULL (SQLite fsyncs the WAL before the commit returns), on a WAL database with
// p2pchat's other settings and tables (bench/baseline/db.mjs: busy_timeout 5000, WAL,
// foreign_keys ON, migration 1's `messages` table and indexes). Paced exactly as the
// ack-latency senders pace their messages: commit i is due at t0 + i/rate (200/s: 5 ms
// apart), because this disk's fsync time depends on the spacing (0.2 ms back to back, far
// more 5 ms apart). The latency of a commit is the time the INSERT's transaction takes. No
// p2pchat code and no network.
//
//   node bench/drivers/fsync.mjs --db DIR [--rate 200 --count 600 --runs 1 --warmup 20]
// Prints one JSON line: {"runs": [p99 ms per run], "unit": "ms", "late": n}.
import { randomUUID } from "node:crypto"
import { parseArgs } from "node:util"
import { openDb } from "../baseline/db.mjs"
import { KIB_TEXT } from "../lib/frames.mjs"
import { percentile } from "../lib/stats.mjs"

const { values: opt } = parseArgs({
  options: {
    db: { type: "string" },
    rate: { type: "string", default: "200" },
    count: { type: "string", default: "600" },
    runs: { type: "string", default: "1" },
    warmup: { type: "string", default: "20" }
  }
})
if (opt.db === undefined) throw new Error("--db DIR is required")

const store = openDb(opt.db)
const { db } = store
// The figure is about FULL on WAL: refuse to measure anything else.
const mode = db.pragma("journal_mode", { simple: true })
const sync = db.pragma("synchronous", { simple: true })
if (mode !== "wal" || sync !== 2) throw new Error(`expected journal_mode wal and synchronous FULL (2), got ${mode} and ${sync}`)

const commit = () => db.transaction(() => store.sent(randomUUID(), "bob", KIB_TEXT, "noise"))

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const interval = 1000 / Number(opt.rate)
for (let i = 0; i < Number(opt.warmup); i++) {
  commit()
  await sleep(interval)
}

// As the senders (bench/baseline/client.mjs, bench/drivers/sender.ts): `late` counts commits
// that started over one interval after they were due (the pacing did not hold).
let late = 0
const runs = []
for (let r = 0; r < Number(opt.runs); r++) {
  const lat = []
  const t0 = performance.now() + 5
  for (let i = 0; i < Number(opt.count); i++) {
    const due = t0 + i * interval
    const wait = due - performance.now()
    if (wait > 0) await sleep(wait)
    const start = performance.now()
    if (start - due > interval) late++
    commit()
    lat.push(performance.now() - start)
  }
  runs.push(percentile(lat, 99))
}
store.close()
console.log(JSON.stringify({ runs, unit: "ms", late }))
