/**
 * Which implementation serves which service, for each role: the whole node, and each
 * role alone as in the original tools. main.ts and the tests build nodes from these.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import { announcerLayer } from "../services/Announcer.ts"
import { Config, configLayer, type LogLevel, type NodeConfig } from "../services/Config.ts"
import { cryptoLayer } from "../services/Crypto.ts"
import { discoveryLayer } from "../services/Discovery.ts"
import { eventsLayer } from "../services/Events.ts"
import { historyLayer } from "../services/History.ts"
import { initiatorLayer } from "../services/Initiator.ts"
import { peerRegistryLayer, registryEventsLayer } from "../services/PeerRegistry.ts"
import { peerSnapshotLayer, snapshotRegistryLayer } from "../services/PeerSnapshot.ts"
import { presenceSocketLayer } from "../services/PresenceSocket.ts"
import { Responder, responderLayer } from "../services/Responder.ts"
import { type Store, type StoreError, storeLayer } from "../services/Store.ts"

const EFFECT_LEVEL: Record<LogLevel, "Debug" | "Info" | "Warn" | "Error" | "None"> = {
  debug: "Debug",
  info: "Info",
  warning: "Warn",
  error: "Error",
  none: "None"
}

/** Log lines go to stderr, so that stdout carries only what the user asked for. */
const stderrLogger = Logger.make(({ logLevel, message }) => {
  const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
  process.stderr.write(`p2pchat [${logLevel.toLowerCase()}] ${text}\n`)
})

export const loggingLayer = (level: LogLevel) =>
  Layer.mergeAll(
    Logger.layer([stderrLogger]),
    Layer.succeed(References.MinimumLogLevel, EFFECT_LEVEL[level])
  )

/** Config, logging and the event hub: what every role has. */
export const baseLayer = (config: NodeConfig) =>
  Layer.mergeAll(configLayer(config), eventsLayer, loggingLayer(config.logLevel))

/** The database of the configured data dir. */
export const storeOf = (config: NodeConfig): Layer.Layer<Store, StoreError> =>
  storeLayer(config.dataDir)

/** `p2pchat announce`: the announcer alone. */
export const announceRole = (config: NodeConfig) =>
  announcerLayer.pipe(
    Layer.provideMerge(presenceSocketLayer),
    Layer.provideMerge(cryptoLayer),
    Layer.provideMerge(baseLayer(config))
  )

/** Keys, the database and history: what every role that chats or remembers needs. */
const storage = (config: NodeConfig) =>
  Layer.mergeAll(cryptoLayer, historyLayer).pipe(
    Layer.provideMerge(storeOf(config)),
    Layer.provideMerge(baseLayer(config))
  )

/** The presence socket and the live registry, over storage. */
const listening = (config: NodeConfig) =>
  peerRegistryLayer.pipe(
    Layer.provideMerge(presenceSocketLayer),
    Layer.provideMerge(storage(config))
  )

/** Discovery feeding the registry, its snapshot for other processes, and its events. */
const discovering = Layer.mergeAll(discoveryLayer, peerSnapshotLayer, registryEventsLayer)

/** `p2pchat discover`: discovery, the registry and its snapshot, shown through Events. */
export const discoverRole = (config: NodeConfig) => discovering.pipe(Layer.provideMerge(listening(config)))

/** The announcer of a whole node: it announces the TCP port the responder bound (the OS's choice for port 0). */
const announcerOfResponder = Layer.unwrap(Effect.gen(function*() {
  const config = yield* Config
  const { port } = yield* Responder
  return announcerLayer.pipe(Layer.provide(configLayer({ ...config, tcpPort: port })))
}))

/**
 * `p2pchat [start]`: the whole node: presence both ways, responder and initiator. The
 * responder listens before the first announcement goes out, so a peer that hears it (and
 * retries its pending messages at once) finds it listening; and the last announcement, the
 * bye, goes out while it still listens.
 */
export const nodeRole = (config: NodeConfig) =>
  Layer.mergeAll(announcerOfResponder, initiatorLayer).pipe(
    Layer.provideMerge(responderLayer),
    Layer.provideMerge(discovering),
    Layer.provideMerge(listening(config))
  )

/**
 * `p2pchat respond`: the responder alone (ChatResponder.py), with discovery listening so
 * that classic senders, which send no name, are named from the registry. It does not
 * announce, and it does not write the peer snapshot (a `discover` beside it may).
 */
export const respondRole = (config: NodeConfig) =>
  Layer.mergeAll(responderLayer, discoveryLayer).pipe(Layer.provideMerge(listening(config)))

/**
 * `p2pchat send` and `p2pchat chat`, run beside a node that owns the ports: the initiator
 * with the data dir's history and the peers that node saved (read-only). Opens no port.
 */
export const clientRole = (config: NodeConfig) =>
  initiatorLayer.pipe(
    Layer.provideMerge(snapshotRegistryLayer),
    Layer.provideMerge(storage(config))
  )
