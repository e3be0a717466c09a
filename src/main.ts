/**
 * The p2pchat command line (CLI.md): parses the command line, picks a layer, runs it.
 * Exit codes: 0 done, 1 failed (the message says why), 2 usage error, 130 stopped by a signal;
 * the process exits only once everything it printed has been written (`flushOutput`).
 *
 * Start-up time: this module imports only what parsing the command line and `--help` need,
 * by deep path (`effect/Effect`, not the `effect` barrel: a name taken from the barrel
 * brings its whole module and everything that module imports into the bundle).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Argument from "effect/cli/Argument"
import * as CliConfig from "effect/cli/CliConfig"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as GlobalFlag from "effect/cli/GlobalFlag"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Stream from "effect/Stream"
import * as readline from "node:readline/promises"
import { CLASSIC_WARNING } from "./domain/Classic.ts"
import { usernameKey, usernameProblem } from "./domain/Presence.ts"
import * as Config from "./services/Config.ts"
import { type NodeConfig, type RawOptions, UsageError } from "./services/Config.ts"
import { type Mode, modeOfWord } from "./domain/Mode.ts"
import { clean, historyLine, peerLine, render, statsLines, toJson, withVerified } from "./ui/render.ts"

/**
 * The modules behind the commands (layers, services, the console, SQLite), each loaded by
 * the first command that needs it: `--help`, `--version` and usage errors load none of them.
 * The build splits every dynamic import into chunks of its own (package.json `build`).
 */
const load = <A>(module: () => Promise<A>): Effect.Effect<A> => Effect.promise(module)
const modules = {
  roles: load(() => import("./layers/Node.ts")),
  console: load(() => import("./ui/Console.ts")),
  crypto: load(() => import("./services/Crypto.ts")),
  events: load(() => import("./services/Events.ts")),
  history: load(() => import("./services/History.ts")),
  initiator: load(() => import("./chat/Initiator.ts")),
  registry: load(() => import("./services/PeerRegistry.ts")),
  snapshot: load(() => import("./services/PeerSnapshot.ts")),
  stats: load(() => import("./chat/StatsSnapshot.ts")),
  store: load(() => import("./services/Store.ts")),
  trust: load(() => import("./trust/Trust.ts"))
}

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
  logLevel: Flag.String("log-level").pipe(Flag.withDescription("debug, info, warning, error or none (env P2PCHAT_LOG_LEVEL)"), Flag.optional),
  maxPeers: Flag.String("max-peers").pipe(Flag.withDescription("peers the registry keeps at most, default 10000"), Flag.optional),
  maxConnections: Flag.String("max-connections").pipe(Flag.withDescription("chat connections open at once, default 1024"), Flag.optional),
  firstFrameTimeout: Flag.String("first-frame-timeout").pipe(
    Flag.withDescription("a connection must complete a frame or handshake within, default 10s"),
    Flag.optional
  ),
  idleTimeout: Flag.String("idle-timeout").pipe(Flag.withDescription("an idle secure chat session is closed after, default 5m"), Flag.optional),
  maxConnectionsPerAddress: Flag.String("max-connections-per-address").pipe(
    Flag.withDescription("chat connections open at once from one address, default 64"),
    Flag.optional
  ),
  idleTimeoutPlain: Flag.String("idle-timeout-plain").pipe(
    Flag.withDescription("an idle chat session that is not secure is closed after, default 30s"),
    Flag.optional
  )
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
  maxPeers: Option.getOrUndefined(p.maxPeers),
  maxConnections: Option.getOrUndefined(p.maxConnections),
  firstFrameTimeout: Option.getOrUndefined(p.firstFrameTimeout),
  idleTimeout: Option.getOrUndefined(p.idleTimeout),
  maxConnectionsPerAddress: Option.getOrUndefined(p.maxConnectionsPerAddress),
  idleTimeoutPlain: Option.getOrUndefined(p.idleTimeoutPlain),
  json: p.json,
  logLevel: Option.getOrUndefined(p.logLevel)
})

/** A failure the user can act on; its message is printed and the exit code is 1. */
interface Failure {
  readonly message: string
}

const resolve = (p: Parsed): Effect.Effect<NodeConfig, UsageError> => Config.make(toRaw(p))

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
        process.stdout.write(`${clean(problem)}\n`)
      }
    } finally {
      rl.close()
    }
  })
}

/** Every line the CLI prints on stdout, sanitised for the terminal (`clean`: peers' names and texts). */
const printLine = (line: string) => Effect.sync(() => void process.stdout.write(`${clean(line)}\n`))

/** Prints every UI event until interrupted (Ctrl-C). */
const showEvents = (config: NodeConfig) =>
  Effect.gen(function*() {
    const { Events } = yield* modules.events
    const stream = yield* (yield* Events).subscribe
    yield* Stream.runForEach(stream, (e) => printLine(render(config.json)(e)))
  })

const announce = Command.make("announce", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p).pipe(Effect.flatMap(withName))
    const { announceRole } = yield* modules.roles
    yield* Effect.gen(function*() {
      yield* Effect.logInfo(`announcing '${config.name}' every ${config.announceEveryMs / 1000} s (Ctrl-C to stop)`)
      return yield* Effect.never
    }).pipe(Effect.provide(announceRole(config)))
  })).pipe(Command.withDescription("announce your username on the LAN (the original Announcement.py)"))

const discover = Command.make("discover", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    const { discoverRole } = yield* modules.roles
    yield* Effect.scoped(Effect.gen(function*() {
      yield* showEvents(config)
    })).pipe(Effect.provide(discoverRole(config)))
  })).pipe(Command.withDescription("listen for peers and print each change as it happens (PeerDiscover.py)"))

const peers = Command.make("peers", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    const { storeOf } = yield* modules.roles
    const { Store } = yield* modules.store
    const { peerView, readSnapshot } = yield* modules.snapshot
    const list = yield* Effect.gen(function*() {
      const store = yield* Store
      return readSnapshot(store, config, new Date())
    }).pipe(Effect.provide(storeOf(config)))
    if (config.json) return yield* printLine(toJson(list.map(peerView)))
    if (list.length === 0) return yield* printLine("no peers known (is a node running with this data dir?)")
    for (const peer of list) yield* printLine(peerLine(peerView(peer)))
  })).pipe(Command.withDescription("the peers known now, with status"))

const statsCommand = Command.make("stats", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    const { storeOf } = yield* modules.roles
    const { Store } = yield* modules.store
    const { readStats } = yield* modules.stats
    const view = yield* Effect.gen(function*() {
      return yield* readStats(yield* Store, Date.now())
    }).pipe(Effect.provide(storeOf(config)))
    if (config.json) return yield* printLine(toJson(view))
    for (const line of statsLines(view)) yield* printLine(line)
  })).pipe(Command.withDescription("what the node running on this data dir has counted"))

const whoami = Command.make("whoami", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    const { loadOrCreateIdentity } = yield* modules.crypto
    const identity = yield* loadOrCreateIdentity(config.dataDir)
    const info = {
      username: config.name ?? null,
      fingerprint: identity.fingerprint,
      id: identity.id,
      dataDir: config.dataDir,
      udpPort: config.udpPort,
      tcpPort: config.tcpPort
    }
    if (config.json) return yield* printLine(toJson(info))
    yield* printLine(`username:    ${info.username ?? "(not set: --name or P2PCHAT_NAME)"}`)
    yield* printLine(`fingerprint: ${info.fingerprint}`)
    yield* printLine(`data dir:    ${info.dataDir}`)
    yield* printLine(`ports:       UDP ${info.udpPort}, TCP ${info.tcpPort}`)
  })).pipe(Command.withDescription("your name, fingerprint, data dir and ports"))

/** The whole node with the console; when input ends (no terminal), it keeps serving. */
const runNode = (p: Parsed) =>
  Effect.gen(function*() {
    const config = yield* resolve(p).pipe(Effect.flatMap(withName))
    const { nodeRole } = yield* modules.roles
    const { runConsole } = yield* modules.console
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
    const { respondRole } = yield* modules.roles
    yield* Effect.scoped(showEvents(config)).pipe(Effect.provide(respondRole(config)))
  })).pipe(Command.withDescription("the responder alone; prints every message it receives (ChatResponder.py)"))

const chat = Command.make("chat", options, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    const { clientRole } = yield* modules.roles
    const { runConsole } = yield* modules.console
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
    const mode: Mode | undefined = chosen[0] === undefined ? undefined : modeOfWord(chosen[0])
    const { clientRole } = yield* modules.roles
    const { Initiator } = yield* modules.initiator
    const result = yield* Effect.gen(function*() {
      const initiator = yield* Initiator
      return yield* initiator.send(p.user, p.text.join(" "), mode)
    }).pipe(Effect.scoped, Effect.provide(clientRole(config)))
    if (result.mode === "classic-3des") yield* Effect.sync(() => process.stderr.write(`p2pchat: warning: ${CLASSIC_WARNING}\n`))
    if (config.json) yield* printLine(toJson(result))
    // Held for a key (the warning above says why): stored, not delivered, so not a success.
    if (result.state === "pending") return yield* Effect.fail({ message: `not sent to ${result.peer} now: the message is kept as pending` })
    if (!config.json) yield* printLine(result.state === "delivered" ? `delivered to ${result.peer}` : `sent to ${result.peer} (classic peers do not confirm delivery)`)
  })).pipe(Command.withDescription("send one message; exit 0 once delivered (acked), or sent to a classic peer"))

const historyCommand = Command.make("history", {
  ...options,
  user: Argument.String("user").pipe(Argument.withDescription("whose conversation (all when omitted)"), Argument.optional)
}, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    const user = Option.getOrUndefined(p.user)
    const { storeOf } = yield* modules.roles
    const History = yield* modules.history
    const entries = yield* Effect.gen(function*() {
      const history = yield* History.History
      const verified = new Set((yield* history.pins()).filter((p) => p.verified).map((p) => p.username))
      return withVerified(yield* history.conversation(user === undefined ? undefined : usernameKey(user)), verified)
    }).pipe(Effect.provide(History.layer.pipe(Layer.provide(storeOf(config)))))
    if (config.json) return yield* printLine(toJson(entries))
    if (entries.length === 0) return yield* printLine("no messages")
    for (const h of entries) yield* printLine(historyLine(h))
  })).pipe(Command.withDescription("the conversation with USER, or all"))

const trust = Command.make("trust", {
  ...options,
  user: Argument.String("user").pipe(Argument.withDescription("whose key to accept")),
  fingerprint: Argument.String("fingerprint").pipe(
    Argument.withDescription("the fingerprint you compared with USER: 60 digits, or at least the first 20 (spaces optional)"),
    Argument.variadic
  )
}, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(p)
    const { clientRole } = yield* modules.roles
    const { Initiator } = yield* modules.initiator
    const { Trust, trustChoices } = yield* modules.trust
    yield* Effect.gen(function*() {
      const t = yield* Trust
      if (p.fingerprint.length === 0) {
        for (const line of trustChoices(p.user, yield* t.pinned(p.user), yield* t.presented(p.user))) yield* printLine(line)
        return yield* new UsageError({ message: `trust ${p.user}: give the fingerprint you compared` })
      }
      const trusted = yield* t.trustPeer(p.user, p.fingerprint.join(" "))
      yield* printLine(`trusted ${p.user}'s key: ${trusted}`)
      const sent = yield* (yield* Initiator).retryPending(p.user)
      if (sent > 0) yield* printLine(`${sent} waiting message(s) delivered`)
    }).pipe(Effect.scoped, Effect.provide(clientRole(config)))
  })).pipe(Command.withDescription("accept the key of USER whose fingerprint you compared"))

const root = Command.make("p2pchat", options, runNode).pipe(
  Command.withDescription("serverless chat for your LAN"),
  Command.withSubcommands([start, announce, discover, respond, chat, peers, statsCommand, send, historyCommand, whoami, trust])
)

const errorMessage = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" ? e.message : String(e)

/**
 * Resolves once everything written to `stream` so far has been handed to the system, or
 * the stream failed (EPIPE: the reader has gone, so nothing more can be delivered).
 *
 * Writes to a pipe are asynchronous on every Node (what the pipe cannot take at once waits
 * in the process until the reader reads), and `process.exit` drops whatever still waits:
 * `p2pchat history --json | jq` got an array cut mid-string. A write's callback runs once
 * that write and every write before it are done, whoever made them (printLine, the
 * console, effect/cli's help, the logger), so an empty write marks "all until now".
 * Files and terminals are written synchronously: there the callback comes at once.
 */
const flushed = (stream: NodeJS.WriteStream): Promise<void> =>
  new Promise((resolve) => {
    // Nothing waiting: nothing to wait for. (An empty write to an idle stream is not only
    // useless: on Node 26 its callback sometimes never came, and the process hung.)
    if (stream.destroyed || stream.writableEnded || stream.writableLength === 0) return resolve()
    // an error ends the wait; it must not be thrown as uncaught while the process exits
    stream.on("error", () => resolve())
    stream.write("", () => resolve())
  })

/** stdout and stderr, written out. */
const flushOutput = (): Promise<void> => Promise.all([flushed(process.stdout), flushed(process.stderr)]).then(() => {})

/**
 * Exits with `code` once the output is written. The exit itself stays explicit: a command
 * may leave handles open (stdin, sockets of layers being torn down) that would keep the
 * process alive.
 */
const exitWith = (code: number) =>
  Effect.promise(flushOutput).pipe(Effect.andThen(Effect.sync(() => process.exit(code))))

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
      // The message may quote a peer's name (a SendError): sanitised like every printed line.
      process.stderr.write(`p2pchat: ${clean(errorMessage(e as Failure))}\n`)
      return usage ? 2 : 1
    })
  }),
  Effect.flatMap(exitWith),
  Effect.provide(Layer.mergeAll(
    NodeServices.layer,
    Layer.succeed(CliConfig.CliConfig, { builtIns: [GlobalFlag.Help, GlobalFlag.Version] })
  ))
)

// A reader that goes away early (`p2pchat history | head -1`) is not an error of p2pchat:
// what it did not read is not wanted, so the command ends quietly, as Unix tools do.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0)
})

// Stopped by SIGINT or SIGTERM (or a defect), the program does not reach exitWith: runMain
// exits with 130 (or 1) from its teardown, here after the output is written as well.
NodeRuntime.runMain(program as Effect.Effect<void>, {
  teardown: (exit, onExit) => Runtime.defaultTeardown(exit, (code) => void flushOutput().then(() => onExit(code)))
})
