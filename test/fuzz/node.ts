/**
 * One in-process node for the fuzz: the `respond` role (responder, discovery, registry,
 * history, identity) built from the service layers on loopback with OS-chosen ports and a
 * temporary data dir. It is the composition of `respondRole` in src/layers/Node.ts, except
 * that its log lines are captured (warnings and errors), so that each refused connection
 * can be matched with the client that caused it.
 */
import { Context, Effect, Exit, Layer, Logger, References, Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { chatSide, receiving, storeOf } from "../../src/layers/Node.ts"
import * as Config from "../../src/services/Config.ts"
import * as Crypto from "../../src/services/Crypto.ts"
import * as Discovery from "../../src/services/Discovery.ts"
import * as Events from "../../src/services/Events.ts"
import * as History from "../../src/services/History.ts"
import type { HistoryEntry, Pin } from "../../src/services/History.ts"
import * as PeerRegistry from "../../src/services/PeerRegistry.ts"
import * as PresenceSocket from "../../src/services/PresenceSocket.ts"
import { Responder, type ResponderStats } from "../../src/chat/Responder.ts"
import type { Peer } from "../../src/domain/Peer.ts"

export interface LogLine {
  readonly level: string
  readonly message: string
}

export interface FuzzNode {
  readonly name: string
  readonly dataDir: string
  readonly udpPort: number
  readonly tcpPort: number
  /** The node's own key id, as it announces it. */
  readonly ownId: string
  readonly ownPublicKey: Uint8Array
  readonly discoveryStats: () => Discovery.DiscoveryStats
  readonly responderStats: () => ResponderStats
  readonly udpDropped: () => number
  readonly peers: () => Promise<ReadonlyArray<Peer>>
  readonly lookup: (username: string) => Promise<Peer | undefined>
  readonly history: () => Promise<ReadonlyArray<HistoryEntry>>
  readonly pins: () => Promise<ReadonlyArray<Pin>>
  /** Warnings and errors logged since the last call (then forgotten). */
  readonly takeLogs: () => Array<LogLine>
  readonly close: () => Promise<void>
}

const lineOf = (message: unknown): string =>
  Array.isArray(message) ? message.map(String).join(" ") : String(message)

/** Builds the node; `onLog` sees every warning and error as it is logged. */
export const startFuzzNode = async (opts: {
  readonly name?: string
  readonly onLog?: (line: LogLine) => void
  readonly overrides?: Partial<Config.NodeConfig>
} = {}): Promise<FuzzNode> => {
  const name = opts.name ?? "fuzznode"
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-fuzz-"))
  // Every fuzz datagram comes from 127.0.0.1: the per-address rate limit and registry cap
  // (tested on their own) would refuse most of them, and hide what the decoder did with them.
  // A flood of invented names must not fill the registry during a long run either.
  const config = Config.testConfig({
    name,
    dataDir,
    maxPeers: 1_000_000,
    maxPeersPerAddress: 1_000_000,
    presenceRatePerAddress: 1_000_000_000,
    // Nothing expires during a run (nor does a remembered stamp fade), so that the registry
    // is what the rules make of the datagrams alone (test/fuzz/oracle.ts, PresenceModel).
    expireAfterMs: 24 * 60 * 60_000,
    ...opts.overrides
  })
  let logs: Array<LogLine> = []
  const capture = Logger.make(({ logLevel, message }) => {
    const line = { level: String(logLevel), message: lineOf(message) }
    logs.push(line)
    if (logs.length > 100_000) logs = logs.slice(-50_000)
    opts.onLog?.(line)
  })
  const base = Layer.mergeAll(
    Config.layer(config),
    Events.layer,
    Logger.layer([capture]),
    Layer.succeed(References.MinimumLogLevel, "Warn")
  )
  // The responder with discovery listening beside it in one process (as `start` has them), so classic senders get names.
  const layer = Layer.mergeAll(chatSide(receiving), Discovery.layer).pipe(
    Layer.provideMerge(PeerRegistry.layer),
    Layer.provideMerge(PresenceSocket.layer),
    Layer.provideMerge(Crypto.layer),
    Layer.provideMerge(History.layer),
    Layer.provideMerge(storeOf(config)),
    Layer.provideMerge(base)
  )
  const scope = Effect.runSync(Scope.make())
  let ctx: Context.Context<Layer.Success<typeof layer>>
  try {
    ctx = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  } catch (e) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    fs.rmSync(dataDir, { recursive: true, force: true })
    throw e
  }
  const responder = Context.get(ctx, Responder)
  const discovery = Context.get(ctx, Discovery.Discovery)
  const registry = Context.get(ctx, PeerRegistry.PeerRegistry)
  const socket = Context.get(ctx, PresenceSocket.PresenceSocket)
  const history = Context.get(ctx, History.History)
  const identity = Context.get(ctx, Crypto.Crypto).identity
  return {
    name,
    dataDir,
    udpPort: socket.port,
    tcpPort: responder.port,
    ownId: identity.id,
    ownPublicKey: identity.keyPair.publicKey,
    discoveryStats: () => Effect.runSync(discovery.stats),
    responderStats: () => Effect.runSync(responder.stats),
    udpDropped: () => socket.dropped(),
    peers: () => Effect.runPromise(registry.list),
    lookup: (username) => Effect.runPromise(registry.lookup(username)).then((o) => (o._tag === "Some" ? o.value : undefined)),
    history: () => Effect.runPromise(Effect.orDie(history.conversation())),
    pins: () => Effect.runPromise(Effect.orDie(history.pins())),
    takeLogs: () => {
      const out = logs
      logs = []
      return out
    },
    close: async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  }
}
