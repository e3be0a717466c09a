/**
 * registry-10k-memory: a whole p2pchat node (nodeRole, as `p2pchat start` builds it) hears
 * 10,000 distinct announcements as real UDP datagrams on loopback (from 250 loopback source
 * addresses, as from a LAN of many hosts); the figure is the heap it holds afterwards
 * beyond what it held before, both measured after a full GC.
 *
 *   node --expose-gc dist/bench/registry.js --data-dir DIR [--count 10000]
 * Prints {"extraMB", "baseMB", "afterMB", "peers", "rssMB", "ms"}.
 */
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as dgram from "node:dgram"
import { parseArgs } from "node:util"
import { nodeRole } from "../../src/layers/Node.ts"
import { testConfig } from "../../src/services/Config.ts"
import { PeerRegistry } from "../../src/services/PeerRegistry.ts"
import { PresenceSocket } from "../../src/services/PresenceSocket.ts"

const { values: opt } = parseArgs({
  options: { "data-dir": { type: "string" }, count: { type: "string", default: "10000" } }
})
const count = Number(opt.count)
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error("run with node --expose-gc")

const settledHeap = Effect.promise(async () => {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((r) => setTimeout(r, 20))
  }
  return process.memoryUsage().heapUsed / (1024 * 1024)
})

const program = Effect.gen(function*() {
  const registry = yield* PeerRegistry
  const { port } = yield* PresenceSocket
  yield* Effect.sleep("300 millis") // the node's own start-up work (first announcement, snapshot) settles
  const baseMB = yield* settledHeap
  // A node holds at most 64 names per source address and reads 20 datagrams a second from
  // one address (bursts of 40): the announcements come as from a LAN of many hosts, 40
  // names from each of 250 loopback addresses (127.1.0.1 ... 127.1.0.250; all of 127/8
  // is loopback), each within its first burst.
  const perAddress = 40
  const addresses = Math.ceil(count / perAddress)
  if (addresses > 250) return yield* Effect.die("at most 10,000 announcements (250 addresses x 40)")
  const senders: Array<dgram.Socket> = []
  for (let a = 0; a < addresses; a++) {
    const socket = dgram.createSocket("udp4")
    yield* Effect.promise(() => new Promise<void>((r) => socket.bind(0, `127.1.0.${a + 1}`, () => r())))
    senders.push(socket)
  }
  const t0 = performance.now()
  const deadline = Date.now() + 60_000
  let sent = 0
  // A batch of 25 addresses (1,000 datagrams) fits the socket buffer; the next goes once
  // the registry has them all.
  for (let first = 0; first < addresses; first += 25) {
    for (let a = first; a < Math.min(first + 25, addresses); a++) {
      for (let i = 0; i < perAddress && sent < count; i++, sent++) {
        const datagram = JSON.stringify({
          username: `peer-${String(sent).padStart(5, "0")}`,
          proto: "p2pchat/1",
          port: 10_000 + (sent % 50_000),
          status: "online",
          id: randomBytes(32).toString("base64url")
        })
        senders[a]!.send(datagram, port, "127.0.0.1")
      }
    }
    for (;;) {
      const { peers } = yield* registry.stats
      if (peers >= sent) break
      if (Date.now() > deadline) return yield* Effect.die(`only ${peers} of ${sent} announcements reached the registry in 60 s`)
      yield* Effect.sleep("2 millis")
    }
  }
  const ms = performance.now() - t0
  for (const socket of senders) socket.close()
  yield* Effect.sleep("600 millis") // the snapshot flush (every 250 ms) has written them all
  const afterMB = yield* settledHeap
  const { peers } = yield* registry.stats
  return { extraMB: afterMB - baseMB, baseMB, afterMB, peers, rssMB: process.memoryUsage().rss / (1024 * 1024), ms }
})

const config = testConfig({ dataDir: opt["data-dir"]!, name: "registry-bench", logLevel: "warning" })
Effect.runPromise(program.pipe(Effect.provide(nodeRole(config)), Effect.scoped)).then(
  (result) => {
    console.log(JSON.stringify(result))
    process.exit(0)
  },
  (e) => {
    console.error(String(e))
    process.exit(1)
  }
)
