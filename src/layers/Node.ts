/**
 * Which implementation serves which service, for each role: the whole node, and each
 * role alone as in the original tools. main.ts and the tests build nodes from these.
 *
 * The roles alone run side by side on one host and one data dir as the original's four
 * scripts did: `announce` sends from a UDP port of its own, `discover` alone listens on the
 * presence port (bound exclusively), `respond` listens on TCP only and names classic senders
 * from the peers `discover` saves, and `chat` reads those peers too. Each role that runs a
 * part of a node takes that part's lock on the data dir first (DataDirLock.ts), before any
 * socket or the database: a second one is refused with who holds it.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as PubSub from "effect/PubSub"
import * as References from "effect/References"
import * as Stream from "effect/Stream"
import { clean } from "../domain/Text.ts"
import * as Initiator from "../chat/Initiator.ts"
import * as Groups from "../chat/Groups.ts"
import * as Inbox from "../chat/Inbox.ts"
import * as Links from "../chat/Links.ts"
import * as Outbox from "../chat/Outbox.ts"
import * as NameWatch from "../chat/NameWatch.ts"
import * as Responder from "../chat/Responder.ts"
import * as Stats from "../chat/Stats.ts"
import * as StatsSnapshot from "../chat/StatsSnapshot.ts"
import * as Announcer from "../services/Announcer.ts"
import * as Config from "../services/Config.ts"
import type { LogLevel, NodeConfig } from "../services/Config.ts"
import * as Crypto from "../services/Crypto.ts"
import * as DataDirLock from "../services/DataDirLock.ts"
import * as Discovery from "../services/Discovery.ts"
import * as Events from "../services/Events.ts"
import * as History from "../services/History.ts"
import * as PeerRegistry from "../services/PeerRegistry.ts"
import * as PeerSnapshot from "../services/PeerSnapshot.ts"
import * as PresenceSocket from "../services/PresenceSocket.ts"
import * as Store from "../services/Store.ts"
import * as TransferEngine from "../transfer/Engine.ts"
import * as NodeTransport from "../transport/NodeTransport.ts"
import type { Transport } from "../transport/Transport.ts"
import * as Trust from "../trust/Trust.ts"

const EFFECT_LEVEL: Record<LogLevel, "Debug" | "Info" | "Warn" | "Error" | "None"> = {
  debug: "Debug",
  info: "Info",
  warning: "Warn",
  error: "Error",
  none: "None"
}

/** Log lines go to stderr, so that stdout carries only what the user asked for. */
const stderrLogger = Logger.make(({ logLevel, message }) => {
  // Log lines quote peers (names, refusal reasons): escaped like every other terminal text.
  const text = clean(Array.isArray(message) ? message.map(String).join(" ") : String(message))
  process.stderr.write(`p2pchat [${logLevel.toLowerCase()}] ${text}\n`)
})

/**
 * The logger of every role: stderr's, unless the caller provides another (main.ts gives
 * `start` and `chat` the console's, which prints above the line being typed).
 */
export const RoleLogger = Context.Reference<Logger.Logger<unknown, void>>("p2pchat/RoleLogger", {
  defaultValue: () => stderrLogger
})

export const loggingLayer = (level: LogLevel) =>
  Layer.mergeAll(
    Logger.layer([Effect.service(RoleLogger)]),
    Layer.succeed(References.MinimumLogLevel, EFFECT_LEVEL[level])
  )

/** Config, logging and the event hub: what every role has. */
export const baseLayer = (config: NodeConfig) =>
  Layer.mergeAll(Config.layer(config), Events.layer, loggingLayer(config.logLevel))

/**
 * The event hub of `discover` and `respond`, whose only reader (the CLI's printer) subscribes
 * once the role is built, after its sockets are bound: what the role heard meanwhile (a
 * peer's first announcement, a first message) is held, up to 1,024 events, and handed to the
 * first subscriber instead of being lost. From then on it is Events.layer's hub.
 */
const eventsFromStart = Layer.effect(
  Events.Events,
  Effect.gen(function*() {
    const hub = yield* PubSub.sliding<Events.UiEvent>(4096)
    yield* Effect.addFinalizer(() => PubSub.shutdown(hub))
    let held: Array<Events.UiEvent> | undefined = []
    return Events.Events.of({
      publish: (event) =>
        Effect.suspend(() => {
          if (held === undefined) return PubSub.publish(hub, event).pipe(Effect.asVoid)
          if (held.length < 1024) held.push(event)
          return Effect.void
        }),
      subscribe: Effect.flatMap(PubSub.subscribe(hub), (sub) =>
        Effect.sync(() => {
          // in one step, so that nothing published meanwhile overtakes what was held
          for (const event of held ?? []) PubSub.publishUnsafe(hub, event)
          held = undefined
          return Stream.fromSubscription(sub)
        }))
    })
  })
)

/** The base, and the data dir locked for `role` (built after the logger, before anything else). */
const lockedBase = (config: NodeConfig, role: DataDirLock.LockRole | undefined) => {
  if (role === undefined) return baseLayer(config)
  const base = role === "discover" || role === "respond"
    ? Layer.mergeAll(Config.layer(config), eventsFromStart, loggingLayer(config.logLevel))
    : baseLayer(config)
  return DataDirLock.layer(role).pipe(Layer.provideMerge(base))
}

/** The database of the configured data dir. */
export const storeOf = (config: NodeConfig): Layer.Layer<Store.Store, Store.StoreError> => Store.layer(config.dataDir)

/**
 * `p2pchat announce`: the announcer alone (Announcement.py), sending from a UDP port of its
 * own, so that it takes none of the datagrams meant for a `discover` beside it.
 */
export const announceRole = (config: NodeConfig) =>
  Announcer.layer.pipe(
    Layer.provideMerge(PresenceSocket.senderLayer),
    Layer.provideMerge(Crypto.layer),
    Layer.provideMerge(lockedBase(config, "announce"))
  )

/**
 * Keys, the database, history and trust: what every role that chats or remembers needs;
 * with the data dir locked for `role` when given.
 */
const storage = (config: NodeConfig, role?: DataDirLock.LockRole) =>
  Layer.mergeAll(Crypto.layer, Trust.layer).pipe(
    Layer.provideMerge(History.layer),
    Layer.provideMerge(storeOf(config)),
    Layer.provideMerge(lockedBase(config, role))
  )

/** The presence socket and the live registry, over storage. */
const listening = (config: NodeConfig, role: DataDirLock.LockRole) =>
  PeerRegistry.layer.pipe(
    Layer.provideMerge(PresenceSocket.layer),
    Layer.provideMerge(storage(config, role))
  )

/** Discovery feeding the registry, its snapshot for other processes, and its events. */
const discovering = Layer.mergeAll(Discovery.layer, PeerSnapshot.layer, PeerRegistry.eventsLayer)

/** `p2pchat discover`: discovery, the registry and its snapshot, shown through Events. */
export const discoverRole = (config: NodeConfig) => discovering.pipe(Layer.provideMerge(listening(config, "discover")))

/** A layer of Transfers (Engine.ts: a node's, or a client's). */
type TransfersLayer = typeof TransferEngine.layer

/**
 * The sending side with `transfers`: the Initiator over the Outbox over the Links, and the
 * Transfers that Initiator.sendFile prepares offers with.
 */
const sendingWith = (transfers: TransfersLayer) =>
  Initiator.layer.pipe(
    Layer.provideMerge(Outbox.layer),
    Layer.provideMerge(Links.layer),
    Layer.provideMerge(Groups.layer),
    Layer.provideMerge(transfers)
  )

/**
 * The sending side of a process beside a running node (`send`, `send-file`, `accept`): its
 * Transfers prepare, record and list; the node on the data dir serves and fetches (it takes
 * up an acceptance recorded here within Engine.SWEEP_EVERY_MS, and serves offers stored
 * here when asked).
 */
export const sending = sendingWith(TransferEngine.clientLayer)

/**
 * The receiving side: the Responder, the Inbox its sessions deliver to, and the Transfers
 * that serve file sessions, record offers and fetch what is accepted (one instance with the
 * sending side's in a whole node).
 */
export const receiving = Responder.layer.pipe(
  Layer.provideMerge(Inbox.layer),
  Layer.provideMerge(Groups.layer),
  Layer.provideMerge(TransferEngine.layer)
)

/**
 * A chat side with the stats, the transport and trust it needs, over storage, a registry and
 * the base that the caller provides: for stacks built by hand (tests, the fuzzer).
 */
export const chatSide = <A, E, R>(side: Layer.Layer<A, E, R>, transport: Layer.Layer<Transport> = NodeTransport.layer) =>
  side.pipe(Layer.provideMerge(Layer.mergeAll(Stats.layer, transport, Trust.layer)))

/** The announcer of a whole node: it announces the TCP port the responder bound (the OS's choice for port 0). */
const announcerOfResponder = Layer.unwrap(Effect.gen(function*() {
  const config = yield* Config.Config
  const { port } = yield* Responder.Responder
  return Announcer.layer.pipe(Layer.provide(Config.layer({ ...config, tcpPort: port })))
}))

/**
 * `p2pchat [start]`: the whole node: presence both ways, responder and initiator. The
 * responder listens before the first announcement goes out, so a peer that hears it (and
 * retries its pending messages at once) finds it listening; and the last announcement, the
 * bye, goes out while it still listens. Its counters are saved in the data dir for `p2pchat stats`.
 */
export const nodeRole = (config: NodeConfig, transport: Layer.Layer<Transport> = NodeTransport.layer) =>
  Layer.mergeAll(announcerOfResponder, sendingWith(TransferEngine.layer), StatsSnapshot.layer, NameWatch.layer).pipe(
    Layer.provideMerge(receiving),
    Layer.provideMerge(Layer.mergeAll(Stats.layer, transport)),
    Layer.provideMerge(discovering),
    Layer.provideMerge(listening(config, "start"))
  )

/**
 * `p2pchat respond`: the responder alone (ChatResponder.py), on TCP only. Classic senders,
 * which send no name, are named from the peers saved in the data dir by the `discover` (or
 * node) beside it, read-only as `chat` reads them: it does not bind the presence port, which
 * that `discover` holds. It saves its counters for `p2pchat stats`.
 */
export const respondRole = (config: NodeConfig) =>
  Layer.mergeAll(receiving, StatsSnapshot.layer).pipe(
    Layer.provideMerge(Layer.mergeAll(Stats.layer, NodeTransport.layer, PeerSnapshot.registryLayer)),
    Layer.provideMerge(storage(config, "respond"))
  )

/**
 * `p2pchat send` and `p2pchat chat`, run beside a node that owns the ports: the initiator
 * with the data dir's history and the peers that node saved (read-only). Opens no port.
 */
export const clientRole = (config: NodeConfig) =>
  sending.pipe(
    Layer.provideMerge(Layer.mergeAll(Stats.layer, NodeTransport.layer, PeerSnapshot.registryLayer)),
    Layer.provideMerge(storage(config))
  )
