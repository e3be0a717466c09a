/**
 * In-process nodes for the integration tests: the role layers of src/layers/Node.ts built
 * with testConfig (bind 127.0.0.1, OS-chosen ports), each in a scope of its own that the
 * test's scope closes at the latest; temp data dirs owned by the test's scope; bounded
 * polling; and the small views of history and events the tests compare.
 *
 * Everything here runs inside an `it.live` / `it.scoped` test's Effect: what it acquires is
 * released when the test ends.
 */
import { Context, Effect, Exit, Layer, Scope, Stream } from "effect"
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { nodeRole } from "../../src/layers/Node.ts"
import { type NodeConfig, testConfig } from "../../src/services/Config.ts"
import { Crypto } from "../../src/services/Crypto.ts"
import { Events, type UiEvent } from "../../src/services/Events.ts"
import { History, type HistoryEntry } from "../../src/services/History.ts"
import { Initiator } from "../../src/chat/Initiator.ts"
import { InitiatorTuning } from "../../src/chat/Tuning.ts"
import { PeerRegistry } from "../../src/services/PeerRegistry.ts"
import { PresenceSocket } from "../../src/services/PresenceSocket.ts"
import { Responder } from "../../src/chat/Responder.ts"
import { Store } from "../../src/services/Store.ts"

export const LOOPBACK = "127.0.0.1"

export const sleep = (ms: number) => Effect.sleep(`${ms} millis`)

/** A fresh temp dir (`p2pchat-<prefix>-…`), removed when the test's scope closes. */
export const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), `p2pchat-${prefix}-`))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

// ---------------------------------------------------------------------------------------------
// Bounded polling

/**
 * `waitUntil` (a plain check) and `waitUntilEffect` (an effectful one): each polls every
 * 10 ms until its check holds, and fails the test after `ms`, by default `defaultMs`.
 * Each test file names its own default: `const { waitUntil } = polls(3000)`.
 */
export const polls = (defaultMs: number) => ({
  waitUntil: (what: string, check: () => boolean, ms = defaultMs) => waitUntilEffect(what, Effect.sync(check), ms),
  waitUntilEffect: <E, R>(what: string, check: Effect.Effect<boolean, E, R>, ms = defaultMs) =>
    waitUntilEffect(what, check, ms)
})

const waitUntilEffect = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, ms: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out after ${ms} ms waiting for ${what}`))
      yield* sleep(10)
    }
  })

// ---------------------------------------------------------------------------------------------
// Nodes

/** A layer with the initiator's timers set (short ones, so that failures show quickly). */
export const withTuning = <A, E>(layer: Layer.Layer<A, E>, tuning: InitiatorTuning) =>
  layer.pipe(Layer.provide(Layer.succeed(InitiatorTuning, tuning)))

/**
 * Builds a layer that has Events in a scope of its own (closed by closing `scope`, or at the
 * end of the test), and records every event it publishes in `events`.
 */
export const buildOwned = <A, E>(layer: Layer.Layer<A, E>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const ctx = yield* Layer.buildWithScope(layer, scope)
    const events: Array<UiEvent> = []
    const stream = yield* Scope.provide(scope)((ctx as Context.Context<Events | A>).pipe(Context.get(Events)).subscribe)
    yield* Effect.forkIn(Stream.runForEach(stream, (e) => Effect.sync(() => void events.push(e))), scope)
    return { ctx, scope, events }
  })

/** Everything a whole node provides. */
export type NodeServices = Layer.Success<ReturnType<typeof nodeRole>>

/** A whole node (`p2pchat start` without the console) and its services. */
export interface TestNode {
  readonly name: string
  readonly dataDir: string
  /** The TCP port its responder listens on. */
  readonly port: number
  /** The UDP port of its presence socket. */
  readonly udpPort: number
  /** Its key id, as it announces it. */
  readonly id: string
  readonly fingerprint: string
  readonly context: Context.Context<NodeServices>
  readonly registry: PeerRegistry["Service"]
  readonly history: History["Service"]
  readonly initiator: Initiator["Service"]
  readonly responder: Responder["Service"]
  readonly store: Store["Service"]
  /** Every event it published, in order. */
  readonly events: Array<UiEvent>
  /** Closes the node (all its sockets and its database). */
  readonly close: Effect.Effect<void>
}

export interface NodeOptions {
  /** The initiator's timers. */
  readonly tuning: InitiatorTuning
  /** Its data dir; a fresh temp dir (removed at the end of the test) when not given. */
  readonly dataDir?: string
  /** Config beyond testConfig's and the name and data dir. */
  readonly config?: Partial<NodeConfig>
}

/** Starts a whole node (nodeRole) in a scope of its own. */
export const startNode = (name: string, options: NodeOptions) =>
  Effect.gen(function*() {
    const dataDir = options.dataDir ?? (yield* tempDir(name))
    const layer = withTuning(nodeRole(testConfig({ name, dataDir, ...options.config })), options.tuning)
    const { ctx, scope, events } = yield* buildOwned(layer)
    const { identity } = Context.get(ctx, Crypto)
    const node: TestNode = {
      name,
      dataDir,
      port: Context.get(ctx, Responder).port,
      udpPort: Context.get(ctx, PresenceSocket).port,
      id: identity.id,
      fingerprint: identity.fingerprint,
      context: ctx,
      registry: Context.get(ctx, PeerRegistry),
      history: Context.get(ctx, History),
      initiator: Context.get(ctx, Initiator),
      responder: Context.get(ctx, Responder),
      store: Context.get(ctx, Store),
      events,
      close: Scope.close(scope, Exit.void)
    }
    return node
  })

/**
 * Tells `node` that the p2pchat node `peer` (with its key) is at 127.0.0.1:port, by default
 * its own port, as Discovery would on hearing its signed announcement.
 */
export const meet = (node: TestNode, peer: Pick<TestNode, "name" | "id" | "port">, port = peer.port) =>
  node.registry.heard({ username: peer.name, proto: "p2pchat/1", port, id: peer.id }, LOOPBACK, 0, true)

// ---------------------------------------------------------------------------------------------
// Ports and servers

/**
 * A TCP port on 127.0.0.1 that nothing listens on: bound by the OS, then released (also for
 * a node that must come back on the same port).
 */
export const freeTcpPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const s = net.createServer()
    s.listen(0, LOOPBACK, () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
)

/** A UDP port on 127.0.0.1 the OS chose, released again. */
export const freeUdpPort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const s = dgram.createSocket("udp4")
    s.bind(0, LOOPBACK, () => {
      const port = s.address().port
      s.close(() => resolve(port))
    })
  })
)

/**
 * A TCP server on 127.0.0.1 (on a port the OS chose) owned by the test's scope: at the end it
 * destroys every connection it accepted, then closes.
 */
export const tcpServer = (onConnection: (socket: net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ server: net.Server; port: number; sockets: Set<net.Socket> }>((resolve) => {
        const sockets = new Set<net.Socket>()
        const server = net.createServer((s) => {
          sockets.add(s)
          s.on("close", () => sockets.delete(s))
          s.on("error", () => {})
          onConnection(s)
        })
        server.listen(0, LOOPBACK, () => resolve({ server, port: (server.address() as net.AddressInfo).port, sockets }))
      })
    ),
    ({ server, sockets }) =>
      Effect.promise(() =>
        new Promise<void>((done) => {
          for (const s of sockets) s.destroy()
          server.close(() => done())
        })
      )
  )

// ---------------------------------------------------------------------------------------------
// What the tests compare

/** A node's history (with `peer`, or all of it); a storage failure fails the test. */
export const conversation = (node: { readonly history: History["Service"] }, peer?: string) =>
  Effect.orDie(node.history.conversation(peer))

/** History entries as `direction peer mode state text`. */
export const summary = (entries: ReadonlyArray<HistoryEntry>) =>
  entries.map((e) => `${e.direction} ${e.peer} ${e.mode} ${e.state} ${e.text}`)

/** The `message` events as `from: text (mode)`. */
export const messageEvents = (events: ReadonlyArray<UiEvent>) =>
  events.flatMap((e) => (e.event === "message" ? [`${e.from}: ${e.text} (${e.mode})`] : []))

/** Collects what the nodes log (stderr) for the rest of the test; stderr is restored after. */
export const captureLog = Effect.gen(function*() {
  const logged: Array<string> = []
  const realWrite = process.stderr.write.bind(process.stderr)
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      process.stderr.write = ((chunk: string | Uint8Array) => {
        logged.push(String(chunk))
        return true
      }) as typeof process.stderr.write
    }),
    () => Effect.sync(() => void (process.stderr.write = realWrite))
  )
  return logged
})
