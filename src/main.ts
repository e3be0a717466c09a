/**
 * The p2pchat command line (CLI.md): parses the command line, picks a layer, runs it.
 * Exit codes: 0 done, 1 failed (the message says why), 2 usage error.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect, Layer, Option, Stream } from "effect"
import { Argument, CliConfig, Command, Flag, GlobalFlag } from "effect/cli"
import * as readline from "node:readline/promises"
import { usernameProblem } from "./domain/Presence.ts"
import { announceRole, clientRole, discoverRole, nodeRole, respondRole, storeOf } from "./layers/Node.ts"
import { type NodeConfig, type RawOptions, resolveConfig, UsageError } from "./services/Config.ts"
import { idToKey, loadOrCreateIdentity } from "./services/Crypto.ts"
import { CLASSIC_WARNING } from "./domain/Classic.ts"
import { fingerprint } from "./domain/Fingerprint.ts"
import { usernameKey } from "./domain/Presence.ts"
import { Events } from "./services/Events.ts"
import { History, historyLayer } from "./services/History.ts"
import { Initiator, type SendMode } from "./services/Initiator.ts"
import { PeerRegistry } from "./services/PeerRegistry.ts"
import { trust as trustKey } from "./services/SecureSession.ts"
import { runConsole } from "./ui/Console.ts"
import { peerView, readSnapshot } from "./services/PeerSnapshot.ts"
import { Store } from "./services/Store.ts"
import { historyLine, peerLine, render } from "./ui/render.ts"

const VERSION = "0.1.0"

/** Every command accepts every option (CLI.md), so a script can pass one set to any. */
const options = {
  name: Flag.String("name").pipe(Flag.withDescription("your username (env P2PCHAT_NAME); asked when missing"), Flag.optional),
  dataDir: Flag.String("data-dir").pipe(Flag.withDescription("where history and keys live (env P2PCHAT_DATA_DIR)"), Flag.optional),
  udpPort: Flag.String("udp-port").pipe(Flag.withDescription("presence port, default 6000 (env P2PCHAT_UDP_PORT)"), Flag.optional),
  tcpPort: Flag.String("tcp-port").pipe(Flag.withDescription("chat port, default 6001 (env P2PCHAT_TCP_PORT)"), Flag.optional),
  bind: Flag.String("bind").pipe(Flag.withDescription("IPv4 address to listen on, default all (env P2PCHAT_BIND)"), Flag.optional),
  target: Flag.String("target").pipe(
    Flag.withDescription("HOST[:PORT] to announce to as well, repeatable (env P2PCHAT_TARGETS, comma list)"),
    Flag.atLeast(0)
  ),
  announceEvery: Flag.String("announce-every").pipe(Flag.withDescription("announcement interval, default 8s"), Flag.optional),
  awayAfter: Flag.String("away-after").pipe(Flag.withDescription("a silent peer is away after, default 10s"), Flag.optional),
  expireAfter: Flag.String("expire-after").pipe(Flag.withDescription("a silent peer is removed after, default 15m"), Flag.optional),
  json: Flag.Boolean("json").pipe(Flag.withDescription("machine-readable output: JSON (lines)"), Flag.withDefault(false)),
  logLevel: Flag.String("log-level").pipe(Flag.withDescription("debug, info, warning, error or none (env P2PCHAT_LOG_LEVEL)"), Flag.optional)
}

type Parsed = {
  readonly [K in keyof typeof options]: (typeof options)[K] extends Flag.Flag<infer A> ? A : never
}

const toRaw = (p: Parsed): RawOptions => ({
  name: Option.getOrUndefined(p.name),
  dataDir: Option.getOrUndefined(p.dataDir),
  udpPort: Option.getOrUndefined(p.udpPort),
  tcpPort: Option.getOrUndefined(p.tcpPort),
  bind: Option.getOrUndefined(p.bind),
  targets: p.target,
  announceEvery: Option.getOrUndefined(p.announceEvery),
  awayAfter: Option.getOrUndefined(p.awayAfter),
  expireAfter: Option.getOrUndefined(p.expireAfter),
  json: p.json,
  logLevel: Option.getOrUndefined(p.logLevel)
})

/** A failure the user can act on; its message is printed and the exit code is 1. */
interface Failure {
  readonly message: string
}

const resolve = (p: Parsed): Effect.Effect<NodeConfig, UsageError> => {
  const config = resolveConfig(toRaw(p))
  return config instanceof UsageError ? Effect.fail(config) : Effect.succeed(config)
}

/** The original asked for the username; so do we, when none was given. */
const withName = (config: NodeConfig): Effect.Effect<NodeConfig, UsageError> => {
  if (config.name !== undefined) return Effect.succeed(config)
  if (!process.stdin.isTTY) {
    return Effect.fail(new UsageError({ message: "no username: pass --name NAME or set P2PCHAT_NAME" }))
  }
  return Effect.promise(async () => {
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout })
    try {
      for (;;) {
        const name = (await rl.question("Enter your username: ")).trim()
        const problem = usernameProblem(name)
        if (problem === undefined) return { ...config, name }
        process.stdout.write(`${problem}\n`)
      }
    } finally {
      rl.close()
    }
  })
}

const printLine = (line: string) => Effect.sync(() => void process.stdout.write(`${line}\n`))

/** Prints every UI event until interrupted (Ctrl-C). */
const showEvents = (config: NodeConfig) =>
  Effect.gen(function*() {
    const events = yield* Events
    const stream = yield* events.subscribe
    yield* Stream.runForEach(stream, (e) => printLine(render(config.json)(e)))
  })

const announce = Command.make("announce", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p).pipe(Effect.flatMap(withName))
    yield* Effect.gen(function*() {
      yield* Effect.logInfo(`announcing '${config.name}' every ${config.announceEveryMs / 1000} s (Ctrl-C to stop)`)
      return yield* Effect.never
    }).pipe(Effect.provide(announceRole(config)))
  })).pipe(Command.withDescription("announce your username on the LAN (the original Announcement.py)"))

const discover = Command.make("discover", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    yield* Effect.scoped(Effect.gen(function*() {
      yield* showEvents(config)
    })).pipe(Effect.provide(discoverRole(config)))
  })).pipe(Command.withDescription("listen for peers and print each change as it happens (PeerDiscover.py)"))

const peers = Command.make("peers", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    const list = yield* Effect.gen(function*() {
      const store = yield* Store
      return readSnapshot(store, config, new Date())
    }).pipe(Effect.provide(storeOf(config)))
    if (config.json) return yield* printLine(JSON.stringify(list.map(peerView)))
    if (list.length === 0) return yield* printLine("no peers known (is a node running with this data dir?)")
    for (const peer of list) yield* printLine(peerLine(peerView(peer)))
  })).pipe(Command.withDescription("the peers known now, with status"))

const whoami = Command.make("whoami", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    const identity = yield* loadOrCreateIdentity(config.dataDir)
    const info = {
      username: config.name ?? null,
      fingerprint: identity.fingerprint,
      id: identity.id,
      dataDir: config.dataDir,
      udpPort: config.udpPort,
      tcpPort: config.tcpPort
    }
    if (config.json) return yield* printLine(JSON.stringify(info))
    yield* printLine(`username:    ${info.username ?? "(not set: --name or P2PCHAT_NAME)"}`)
    yield* printLine(`fingerprint: ${info.fingerprint}`)
    yield* printLine(`data dir:    ${info.dataDir}`)
    yield* printLine(`ports:       UDP ${info.udpPort}, TCP ${info.tcpPort}`)
  })).pipe(Command.withDescription("your name, fingerprint, data dir and ports"))

/** The whole node with the console; when input ends (no terminal), it keeps serving. */
const runNode = (p: Parsed) =>
  Effect.gen(function*() {
    const config = yield* resolve(p).pipe(Effect.flatMap(withName))
    yield* Effect.scoped(Effect.gen(function*() {
      const end = yield* runConsole
      if (end === "eof") yield* Effect.never
    })).pipe(Effect.provide(nodeRole(config)))
  })

const start = Command.make("start", options, runNode).pipe(
  Command.withDescription("the whole node: announcer, discovery, responder, initiator and the console (default)")
)

const respond = Command.make("respond", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    yield* Effect.scoped(showEvents(config)).pipe(Effect.provide(respondRole(config)))
  })).pipe(Command.withDescription("the responder alone; prints every message it receives (ChatResponder.py)"))

const chat = Command.make("chat", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    yield* Effect.scoped(runConsole).pipe(Effect.provide(clientRole(config)))
  })).pipe(Command.withDescription("the console alone, using the peers and history in the data dir (ChatInitiator.py)"))

const send = Command.make("send", {
  ...options,
  user: Argument.String("user").pipe(Argument.withDescription("who to send to")),
  text: Argument.String("text").pipe(Argument.withDescription("the message"), Argument.atLeast(1)),
  secure: Flag.Boolean("secure").pipe(Flag.withDescription("Noise session (default for p2pchat peers)"), Flag.withDefault(false)),
  plain: Flag.Boolean("plain").pipe(Flag.withDescription("unencrypted"), Flag.withDefault(false)),
  classic: Flag.Boolean("classic").pipe(Flag.withDescription("the classic 3DES dialect (NOT secure)"), Flag.withDefault(false))
}, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p).pipe(Effect.flatMap(withName))
    const chosen = (["secure", "plain", "classic"] as const).filter((m) => p[m])
    if (chosen.length > 1) return yield* new UsageError({ message: "choose one of --secure, --plain, --classic" })
    const mode: SendMode | undefined = chosen[0]
    const result = yield* Effect.gen(function*() {
      const initiator = yield* Initiator
      return yield* initiator.send(p.user, p.text.join(" "), mode)
    }).pipe(Effect.scoped, Effect.provide(clientRole(config)))
    if (result.mode === "classic-3des") yield* Effect.sync(() => process.stderr.write(`p2pchat: warning: ${CLASSIC_WARNING}\n`))
    if (config.json) yield* printLine(JSON.stringify(result))
    else yield* printLine(result.state === "delivered" ? `delivered to ${result.peer}` : `sent to ${result.peer} (classic peers do not confirm delivery)`)
  })).pipe(Command.withDescription("send one message; exit 0 once delivered (acked), or sent to a classic peer"))

const historyCommand = Command.make("history", {
  ...options,
  user: Argument.String("user").pipe(Argument.withDescription("whose conversation (all when omitted)"), Argument.optional)
}, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    const user = Option.getOrUndefined(p.user)
    const entries = yield* Effect.gen(function*() {
      return yield* (yield* History).conversation(user === undefined ? undefined : usernameKey(user))
    }).pipe(Effect.provide(historyLayer.pipe(Layer.provide(storeOf(config)))))
    if (config.json) return yield* printLine(JSON.stringify(entries))
    if (entries.length === 0) return yield* printLine("no messages")
    for (const h of entries) yield* printLine(historyLine(h))
  })).pipe(Command.withDescription("the conversation with USER, or all"))

const trust = Command.make("trust", {
  ...options,
  user: Argument.String("user").pipe(Argument.withDescription("whose announced key to accept"))
}, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    yield* Effect.gen(function*() {
      const peer = yield* (yield* PeerRegistry).lookup(p.user)
      const id = Option.isSome(peer) ? peer.value.id : undefined
      if (id === undefined) {
        return yield* Effect.fail({ message: `${p.user} is not announcing a key now; run trust while the peer is online` })
      }
      yield* trustKey(usernameKey(p.user), idToKey(id))
      yield* printLine(`trusted ${p.user}'s key: ${fingerprint(idToKey(id))}`)
      const sent = yield* (yield* Initiator).retryPending(p.user)
      if (sent > 0) yield* printLine(`${sent} waiting message(s) delivered`)
    }).pipe(Effect.scoped, Effect.provide(clientRole(config)))
  })).pipe(Command.withDescription("accept a peer's changed key after checking its fingerprint"))

const root = Command.make("p2pchat", options, runNode).pipe(
  Command.withDescription("serverless chat for your LAN"),
  Command.withSubcommands([start, announce, discover, respond, chat, peers, send, historyCommand, whoami, trust])
)

const errorMessage = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" ? e.message : String(e)

const program = Command.runWith(root, { version: VERSION })(process.argv.slice(2)).pipe(
  Effect.as(0),
  Effect.catch((e: unknown) => {
    const tag = typeof e === "object" && e !== null && "_tag" in e ? (e as { _tag: string })._tag : ""
    // effect/cli has already printed help and the parse error.
    if (tag === "ShowHelp" || tag.startsWith("Unrecognized") || tag.startsWith("Missing") || tag === "InvalidValue") {
      return Effect.succeed(2)
    }
    const usage = tag === "UsageError"
    return Effect.sync(() => {
      process.stderr.write(`p2pchat: ${errorMessage(e as Failure)}\n`)
      return usage ? 2 : 1
    })
  }),
  Effect.flatMap((code) => Effect.sync(() => process.exit(code))),
  Effect.provide(Layer.mergeAll(
    NodeServices.layer,
    Layer.succeed(CliConfig.CliConfig, { builtIns: [GlobalFlag.Help, GlobalFlag.Version] })
  ))
)

NodeRuntime.runMain(program as Effect.Effect<void>)
