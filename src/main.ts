/**
 * The p2pchat command line (docs/cli.md): parses the command line, picks a layer, runs it.
 * The commands are here and in src/cli/ (the options every command shares, the read-only
 * commands, `send`, `config`, and how the program ends). Options go anywhere on the line,
 * before or after the command. Exit codes: 0 done, 1 failed (the message says why), 2 usage
 * error, 130 stopped by SIGINT (Ctrl-C), 143 by SIGTERM; the process exits only once
 * everything it printed has been written (`flushOutput`).
 *
 * Start-up time: this module imports only what parsing the command line and `--help` need,
 * by deep path (`effect/Effect`, not the `effect` barrel: a name taken from the barrel
 * brings its whole module and everything that module imports into the bundle); every
 * command loads its machinery when it runs (`modules`).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Argument from "effect/cli/Argument"
import * as CliConfig from "effect/cli/CliConfig"
import * as Command from "effect/cli/Command"
import * as GlobalFlag from "effect/cli/GlobalFlag"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Stream from "effect/Stream"
import { type NodeConfig, UsageError } from "./services/Config.ts"
import { render } from "./ui/render.ts"
import { base, inCommand, modules, printLine, remember, resolve, resolveNamed, type Shared, VERSION } from "./cli/base.ts"
import { configCommand } from "./cli/config.ts"
import { exitWith, flushOutput, presenter, report, signalCode, watchSignals } from "./cli/output.ts"
import { history, peers, stats, whoami } from "./cli/read.ts"
import { send } from "./cli/send.ts"
import { groupCommand } from "./cli/group.ts"
import { NO_WEB, showWeb, type WebFlags, webFlags, withWeb } from "./cli/web.ts"
import { accept, decline, files, sendFile } from "./cli/files.ts"

/**
 * Prints every UI event until interrupted (Ctrl-C); as text, a file transfer's line only when
 * its state changes (its progress events are for --json).
 */
const showEvents = (config: NodeConfig) =>
  Effect.gen(function*() {
    const { Events } = yield* modules.events
    const stream = yield* (yield* Events).subscribe
    const states = new Map<string, string>()
    yield* Stream.runForEach(stream, (e) => {
      if (e.event === "file" && !config.json) {
        if (states.get(`${e.direction} ${e.id}`) === e.state) return Effect.void
        states.set(`${e.direction} ${e.id}`, e.state)
      }
      return printLine(render(config.json)(e))
    })
  })

const announce = Command.make("announce", {}, () =>
  Effect.gen(function*() {
    const config = yield* resolveNamed(yield* base)
    const { announceRole } = yield* modules.roles
    yield* Effect.gen(function*() {
      yield* Effect.logInfo(`announcing '${config.name}' every ${config.announceEveryMs / 1000} s (Ctrl-C to stop)`)
      return yield* Effect.never
    }).pipe(Effect.provide(announceRole(config)))
  }).pipe(inCommand("announce"))).pipe(Command.withDescription("announce your username on the LAN (the original Announcement.py)"))

const discover = Command.make("discover", {}, () =>
  Effect.gen(function*() {
    const config = yield* resolve(yield* base)
    yield* remember(config)
    const { discoverRole } = yield* modules.roles
    yield* Effect.scoped(showEvents(config)).pipe(Effect.provide(discoverRole(config)))
  }).pipe(inCommand("discover"))).pipe(Command.withDescription("listen for peers and print each change as it happens (PeerDiscover.py)"))

/**
 * The whole node with the console. It ends when the user leaves, or when a script given on
 * standard input ends (exit 1 if a command of it failed); with no input at all (/dev/null)
 * it serves until stopped.
 */
const runNode = (shared: Shared, command: string, web: WebFlags = NO_WEB) =>
  Effect.gen(function*() {
    const config = yield* resolveNamed(shared)
    const { nodeRole, RoleLogger } = yield* modules.roles
    const { consoleLogger, runConsole } = yield* modules.console
    const node = yield* withWeb(web, nodeRole(config))
    yield* Effect.scoped(Effect.gen(function*() {
      yield* showWeb(web, config.json)
      const end = yield* runConsole
      if (end === "eof") yield* Effect.never
    })).pipe(Effect.provide(node), Effect.provideService(RoleLogger, consoleLogger))
  }).pipe(command === "" ? (effect) => effect : inCommand(command))

const start = Command.make("start", webFlags, (web) => Effect.flatMap(base, (shared) => runNode(shared, "start", web))).pipe(
  Command.withDescription("the whole node: announcer, discovery, responder, initiator and the console (default)")
)

const respond = Command.make("respond", {}, () =>
  Effect.gen(function*() {
    const config = yield* resolve(yield* base)
    yield* remember(config)
    const { respondRole } = yield* modules.roles
    yield* Effect.scoped(showEvents(config)).pipe(Effect.provide(respondRole(config)))
  }).pipe(inCommand("respond"))).pipe(Command.withDescription("the responder alone; prints every message it receives (ChatResponder.py)"))

const chat = Command.make("chat", {}, () =>
  Effect.gen(function*() {
    const config = yield* resolve(yield* base)
    yield* remember(config)
    const { clientRole, RoleLogger } = yield* modules.roles
    const { consoleLogger, runConsole } = yield* modules.console
    yield* Effect.scoped(runConsole).pipe(Effect.provide(clientRole(config)), Effect.provideService(RoleLogger, consoleLogger))
  }).pipe(inCommand("chat"))).pipe(Command.withDescription("the console alone, using the peers and history in the data dir (ChatInitiator.py)"))

const trust = Command.make("trust", {
  user: Argument.String("user").pipe(Argument.withDescription("whose key to accept")),
  fingerprint: Argument.String("fingerprint").pipe(
    Argument.withDescription("the fingerprint you compared with USER: 60 digits, or at least the first 20 (spaces optional)"),
    Argument.variadic()
  )
}, (p) =>
  Effect.gen(function*() {
    const config = yield* resolve(yield* base)
    yield* remember(config)
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
  }).pipe(inCommand("trust"))).pipe(Command.withDescription("accept the key of USER whose fingerprint you compared"))

const commands = [
  start, announce, discover, respond, chat, peers, stats, send, sendFile, accept, decline, files, history, whoami, trust, groupCommand,
  configCommand
] as const

/** How `help` shows a command's help: as `COMMAND --help` would (set once `root` exists). */
const showHelp: { run: (words: ReadonlyArray<string>) => Effect.Effect<void, unknown, Command.Environment> } = {
  run: () => Effect.void
}

/** `p2pchat help [COMMAND...]`: the help of the program, or of a command, on stdout. */
const help = Command.make("help", {
  command: Argument.String("command").pipe(Argument.withDescription("the command (config set: both words)"), Argument.variadic())
}, (p) =>
  Effect.gen(function*() {
    const words: ReadonlyArray<string> = p.command
    // each word a command of the one before: the help of anything else would be the root's
    let level: ReadonlyArray<{ readonly name: string; readonly subcommands: Command.Command.Any["subcommands"] }> = [
      ...commands,
      { name: "help", subcommands: [] }
    ]
    for (const word of words) {
      const found = level.find((c) => c.name === word)
      if (found === undefined) return yield* new UsageError({ message: `unknown command '${words.join(" ")}'` })
      level = found.subcommands.flatMap((g) => g.commands)
    }
    yield* showHelp.run(words)
  })).pipe(Command.withDescription("the help of p2pchat, or of COMMAND"))

const root = base.pipe(
  Command.withHandler((shared: Shared) => runNode(shared, "")),
  Command.withDescription("serverless chat for your LAN"),
  Command.withSubcommands([...commands, help])
)

showHelp.run = (words) => Command.runWith(root, { version: VERSION })([...words, "--help"])

const program = Command.runWith(root, { version: VERSION })(process.argv.slice(2)).pipe(
  Effect.as(0),
  Effect.catch(report),
  Effect.flatMap(exitWith),
  Effect.provide(Layer.mergeAll(
    NodeServices.layer,
    presenter,
    Layer.succeed(CliConfig.CliConfig, { builtIns: [GlobalFlag.Help, GlobalFlag.Version] })
  ))
)

// A reader that goes away early (`p2pchat history | head -1`) is not an error of p2pchat:
// what it did not read is not wanted, so the command ends quietly, as Unix tools do.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0)
})

watchSignals()

// Stopped by SIGINT or SIGTERM (or a defect), the program does not reach exitWith: runMain
// exits from its teardown once the layers are closed (the bye sent), with 130 for SIGINT
// and 143 for SIGTERM (or 1), here after the output is written as well.
NodeRuntime.runMain(program as Effect.Effect<void>, {
  teardown: (exit, onExit) =>
    Runtime.defaultTeardown(exit, (code) => void flushOutput().then(() => onExit(signalCode(code))))
})
