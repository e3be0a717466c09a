/**
 * One node of the soak (bench/soak.mjs): a whole node (nodeRole, as `p2pchat start` builds
 * it, bound to 127.0.0.1 on OS-chosen ports) that finds its peer by presence, sends it a
 * secure message at a steady rate with `Initiator.send` (stored pending, sent, acked,
 * marked delivered), and reports its memory and counters.
 *
 *   node --expose-gc dist/bench/soak-node.js --name alice --peer bob --data-dir DIR
 *        [--target-udp PORT] [--udp-port PORT] [--rate 5] [--sample-ms 10000] [--announce-every 2s]
 *
 * Prints JSON lines: {"event":"ready","tcpPort","udpPort"} once listening, then every
 * sample period {"event":"sample", "rss", "heapUsed", ...} (heap after a forced GC when
 * --expose-gc is given, so that the figure is what the node retains). Runs until SIGTERM
 * or stdin closes; the node's scope is closed on the way out.
 */
import { Context, Effect, Exit, Layer, Option, Scope } from "effect"
import { parseArgs } from "node:util"
import { nodeRole } from "../../src/layers/Node.ts"
import { parseDuration, testConfig } from "../../src/services/Config.ts"
import { Discovery } from "../../src/services/Discovery.ts"
import { Initiator } from "../../src/chat/Initiator.ts"
import { PeerRegistry } from "../../src/services/PeerRegistry.ts"
import { PresenceSocket } from "../../src/services/PresenceSocket.ts"
import { Responder } from "../../src/chat/Responder.ts"

const { values: opt } = parseArgs({
  options: {
    name: { type: "string" },
    peer: { type: "string" },
    "data-dir": { type: "string" },
    "target-udp": { type: "string" },
    "udp-port": { type: "string", default: "0" },
    rate: { type: "string", default: "5" },
    "sample-ms": { type: "string", default: "10000" },
    "announce-every": { type: "string", default: "2s" }
  }
})

const say = (obj: object) => process.stdout.write(JSON.stringify(obj) + "\n")
const gc = (globalThis as { gc?: () => void }).gc
const TEXT = "soak message, steady rate ".repeat(8).slice(0, 200)

const config = testConfig({
  name: opt.name!,
  dataDir: opt["data-dir"]!,
  udpPort: Number(opt["udp-port"]),
  targets: opt["target-udp"] === undefined ? [] : [{ host: "127.0.0.1", port: Number(opt["target-udp"]) }],
  announceEveryMs: parseDuration(opt["announce-every"]!) ?? 2000,
  logLevel: "error"
})

const main = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const ctx = yield* Layer.buildWithScope(nodeRole(config), scope)
  const responder = Context.get(ctx, Responder)
  const initiator = Context.get(ctx, Initiator)
  const registry = Context.get(ctx, PeerRegistry)
  const discovery = Context.get(ctx, Discovery)
  say({ event: "ready", tcpPort: responder.port, udpPort: Context.get(ctx, PresenceSocket).port })

  let sent = 0
  let delivered = 0
  let failed = 0
  let lastError = ""
  const started = performance.now()

  const sample = Effect.gen(function*() {
    if (gc !== undefined) {
      gc()
      gc()
    }
    const m = process.memoryUsage()
    const r = yield* responder.stats
    const reg = yield* registry.stats
    const d = yield* discovery.stats
    say({
      event: "sample",
      t: Math.round((performance.now() - started) / 1000),
      rss: m.rss,
      heapUsed: m.heapUsed,
      heapTotal: m.heapTotal,
      external: m.external,
      arrayBuffers: m.arrayBuffers,
      sent,
      delivered,
      failed,
      lastError,
      received: r.received,
      active: r.active,
      rejected: r.rejected,
      limits: r.limits,
      peers: reg.peers,
      datagramsRejected: d.rejected
    })
  })
  yield* Effect.forkIn(Effect.forever(Effect.andThen(Effect.sleep(Number(opt["sample-ms"])), sample)), scope)

  // wait for the peer (bounded), then send at the steady rate, one at a time
  const deadline = Date.now() + 60_000
  for (;;) {
    const peer = yield* registry.lookup(opt.peer!)
    if (Option.isSome(peer) && peer.value.status === "online") break
    if (Date.now() > deadline) {
      say({ event: "error", message: `${opt.peer} not discovered within 60 s` })
      break
    }
    yield* Effect.sleep("50 millis")
  }
  const interval = 1000 / Number(opt.rate)
  const t0 = performance.now()
  const sender = Effect.gen(function*() {
    for (let i = 0; i < Number.MAX_SAFE_INTEGER; i++) {
      const wait = t0 + i * interval - performance.now()
      if (wait > 0) yield* Effect.sleep(wait)
      sent++
      yield* initiator.send(opt.peer!, `${TEXT} #${i}`, "noise").pipe(
        Effect.match({
          onSuccess: () => void delivered++,
          onFailure: (e) => {
            failed++
            lastError = e.message.slice(0, 200)
          }
        })
      )
    }
  })
  yield* Effect.forkIn(sender, scope)

  // until told to stop
  yield* Effect.callback<void>((resume) => {
    const stop = () => resume(Effect.void)
    process.once("SIGTERM", stop)
    process.once("SIGINT", stop)
    process.stdin.once("end", stop)
    process.stdin.once("close", stop)
    process.stdin.resume()
  })
  yield* sample
  yield* Scope.close(scope, Exit.void)
})

Effect.runPromise(main).then(
  () => process.exit(0),
  (e) => {
    say({ event: "error", message: String(e) })
    process.exit(1)
  }
)
