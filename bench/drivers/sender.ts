/**
 * The p2pchat sending side of secure-throughput, plain-throughput and ack-latency-p99: a
 * whole node (nodeRole, as `p2pchat start` builds it) that finds the responder by presence
 * (it announces to --peer-udp, the responder answers by unicast) and sends 1 KiB messages
 * with `Initiator.send`, one at a time: each call stores the message as pending, sends it,
 * waits for the ack and marks it delivered, exactly what the console's `msg` does.
 *
 *   node dist/bench/sender.js --data-dir DIR --peer-udp PORT --peer bob --mode secure|plain
 *        [--seconds S --runs R --warmup W]          throughput: messages/s per run
 *        [--rate 200 --count N --runs R]            latency: p99 ms per run (paced)
 * Prints {"runs": [...], "unit": ...} or {"error": "..."}.
 */
import { Duration, Effect, Option } from "effect"
import { parseArgs } from "node:util"
import { testConfig } from "../../src/services/Config.ts"
import { runInNode } from "./runNode.ts"
import { Initiator } from "../../src/chat/Initiator.ts"
import { modeOfWord } from "../../src/domain/Mode.ts"
import { PeerRegistry } from "../../src/services/PeerRegistry.ts"

const { values: opt } = parseArgs({
  options: {
    "data-dir": { type: "string" },
    "peer-udp": { type: "string" },
    peer: { type: "string", default: "bob" },
    name: { type: "string", default: "alice" },
    mode: { type: "string", default: "secure" },
    seconds: { type: "string", default: "3" },
    runs: { type: "string", default: "3" },
    warmup: { type: "string", default: "100" },
    rate: { type: "string" },
    count: { type: "string", default: "600" }
  }
})

/** The same 1 KiB text as bench/lib/frames.mjs KIB_TEXT. */
const KIB_TEXT = "p2pchat benchmark message ".repeat(40).slice(0, 1024)
const mode = modeOfWord(opt.mode as "secure" | "plain" | "classic")

const percentile = (xs: Array<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

const program = Effect.gen(function*() {
  const registry = yield* PeerRegistry
  const initiator = yield* Initiator
  // The responder answers our first announcement by unicast; wait until we know it.
  const deadline = Date.now() + 15_000
  for (;;) {
    const peer = yield* registry.lookup(opt.peer)
    if (Option.isSome(peer) && peer.value.status === "online") break
    if (Date.now() > deadline) return yield* Effect.fail(`${opt.peer} was not discovered within 15 s`)
    yield* Effect.sleep("10 millis")
  }
  const sendOne = initiator.send(opt.peer, KIB_TEXT, mode).pipe(
    Effect.flatMap((r) => r.state === "delivered" ? Effect.void : Effect.fail(`message ${r.id} ended ${r.state}`)),
    Effect.mapError((e) => typeof e === "string" ? e : `${e._tag} ${e.reason}: ${e.message}`)
  )
  for (let i = 0; i < Number(opt.warmup); i++) yield* sendOne
  const runs: Array<number> = []
  if (opt.rate === undefined) {
    const limitMs = Number(opt.seconds) * 1000
    for (let r = 0; r < Number(opt.runs); r++) {
      const t0 = performance.now()
      let n = 0
      while (performance.now() - t0 < limitMs && n < 1_000_000) {
        yield* sendOne
        n++
      }
      runs.push(n / ((performance.now() - t0) / 1000))
    }
    return { runs, unit: "msg/s" }
  }
  // Paced as bench/baseline/client.mjs: message i is due at t0 + i/rate; latency is from the
  // call to send to the ack; `late` counts messages sent over one interval after they were due.
  const interval = 1000 / Number(opt.rate)
  let late = 0
  for (let r = 0; r < Number(opt.runs); r++) {
    const lat: Array<number> = []
    const t0 = performance.now() + 5
    for (let i = 0; i < Number(opt.count); i++) {
      const due = t0 + i * interval
      const wait = due - performance.now()
      if (wait > 0) yield* Effect.sleep(Duration.millis(wait))
      const start = performance.now()
      if (start - due > interval) late++
      yield* sendOne
      lat.push(performance.now() - start)
    }
    runs.push(percentile(lat, 99))
  }
  return { runs, unit: "ms", late }
})

const config = testConfig({
  dataDir: opt["data-dir"]!,
  name: opt.name,
  targets: [{ host: "127.0.0.1", port: Number(opt["peer-udp"]) }],
  logLevel: "warning"
})
runInNode(program, config)
