/**
 * A flood of bogus announcements on loopback: a host inventing names cannot push real
 * peers out of the registry, and the node keeps serving. In-process node (discovery,
 * registry, presence socket bound to 127.0.0.1, OS-chosen port); every loop bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { baseLayer } from "../../src/layers/Node.ts"
import { testConfig } from "../../src/services/Config.ts"
import * as Crypto from "../../src/services/Crypto.ts"
import * as Discovery from "../../src/services/Discovery.ts"
import * as PeerRegistry from "../../src/services/PeerRegistry.ts"
import * as PresenceSocket from "../../src/services/PresenceSocket.ts"

const FLOOD = 100_000
const FLOODER = "127.0.0.9"
const REAL = ["127.0.0.2", "127.0.0.3"]

const sendAll = (socket: dgram.Socket, payloads: ReadonlyArray<string>, port: number) =>
  new Promise<void>((resolve, reject) => {
    let i = 0
    const next = () => {
      // Bounded batches, yielding to the event loop between them.
      for (let n = 0; n < 500 && i < payloads.length; n++, i++) socket.send(payloads[i]!, port, "127.0.0.1")
      if (i < payloads.length) setImmediate(next)
      else socket.send("", port, "127.0.0.1", (e) => (e ? reject(e) : resolve()))
    }
    next()
  })

const boundSocket = (address: string) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<dgram.Socket>((resolve) => {
        const s = dgram.createSocket("udp4")
        s.bind(0, address, () => resolve(s))
      })
    ),
    (s) => Effect.sync(() => s.close())
  )

describe("presence under a flood", () => {
  it.live(`${FLOOD.toLocaleString("en")} bogus announcements from one host: real peers stay listed, the flooder holds at most its share`, () =>
    Effect.gen(function*() {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-flood-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dataDir, { recursive: true, force: true })))
      const config = testConfig({ dataDir, name: "node" })
      const layer = Discovery.layer.pipe(
        Layer.provideMerge(PeerRegistry.layer),
        Layer.provideMerge(PresenceSocket.layer),
        Layer.provideMerge(Crypto.layer),
        Layer.provideMerge(baseLayer(config))
      )
      const ctx = yield* Layer.build(layer)
      const registry = Context.get(ctx, PeerRegistry.PeerRegistry)
      const discovery = Context.get(ctx, Discovery.Discovery)
      const port = Context.get(ctx, PresenceSocket.PresenceSocket).port

      const flooder = yield* boundSocket(FLOODER)
      const reals = yield* Effect.forEach(REAL, boundSocket)
      const announceReals = Effect.forEach(reals, (s, i) =>
        Effect.promise(() => sendAll(s, [JSON.stringify({ username: `real${i}`, proto: "p2pchat/1", status: "online" })], port)))

      yield* announceReals
      const bogus = Array.from({ length: FLOOD }, (_, i) => JSON.stringify({ username: `bogus${i}` }))
      const started = Date.now()
      // The real peers keep announcing while the flood runs.
      const flood = Effect.promise(() => sendAll(flooder, bogus, port))
      yield* Effect.all([flood, Effect.repeat(announceReals.pipe(Effect.delay("200 millis")), { times: 5 })], { concurrency: 2 })
      yield* Effect.sleep("300 millis")
      yield* announceReals
      // A peer that arrives after the flood still finds room.
      const late = yield* boundSocket("127.0.0.4")
      yield* Effect.promise(() => sendAll(late, [JSON.stringify({ username: "late" })], port))
      yield* Effect.sleep("200 millis")

      const peers = yield* registry.list
      const names = peers.map((p) => p.key)
      assert.include(names, "real0")
      assert.include(names, "real1")
      assert.include(names, "late")
      for (const p of peers.filter((p) => p.key.startsWith("real"))) assert.strictEqual(p.status, "online")
      const fromFlooder = peers.filter((p) => p.address === FLOODER).length
      assert.isAtMost(fromFlooder, config.maxPeersPerAddress)
      const stats = yield* discovery.stats
      // Everything read was counted one way or the other; most of the flood was refused cheaply.
      assert.strictEqual(stats.received, stats.accepted + stats.own + stats.rejected)
      assert.isAbove(stats.rejectedByReason["rate-limited"] ?? 0, 0)
      yield* Effect.logDebug(`flood took ${Date.now() - started} ms; stats ${JSON.stringify(stats)}`)
    }).pipe(Effect.scoped), 60_000)
})
