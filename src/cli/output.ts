/**
 * How the command line ends (cli.md "Exit codes"): what effect/cli's parse errors and the
 * commands' failures print, the exit code of each, and the exit itself once everything
 * printed has been written.
 *
 * A usage error (exit 2) is one line on stderr, `p2pchat: WHAT; see \`p2pchat COMMAND --help\``,
 * and nothing on stdout: effect/cli's own presentation (the whole help on stdout, then the
 * error) is replaced by a Presenter of ours. Help asked for (`--help`, `p2pchat help`) goes
 * to stdout, exit 0.
 */
import type * as CliError from "effect/cli/CliError"
import * as CliOutput from "effect/cli/CliOutput"
import * as Effect from "effect/Effect"
import type { UsageError } from "../services/Config.ts"
import { clean } from "../ui/render.ts"

/** Where a usage error of `commandPath` (the root's name first) sends the user. */
export const helpHint = (commandPath: ReadonlyArray<string>): string =>
  `see \`p2pchat ${[...commandPath.slice(1), "--help"].join(" ")}\``

const suggestion = (suggestions: ReadonlyArray<string>): string =>
  suggestions.length === 0 ? "" : ` (did you mean ${suggestions.join(" or ")}?)`

/** One of effect/cli's parse errors in one line. */
export const parseErrorLine = (e: CliError.NonShowHelpErrors): string => {
  switch (e._tag) {
    case "UnrecognizedOption":
      return `unknown option ${e.option}${suggestion(e.suggestions)}`
    case "UnknownSubcommand":
      return `unknown command '${e.subcommand}'${suggestion(e.suggestions)}`
    case "MissingArgument":
      return `missing ${e.argument.toUpperCase()}`
    case "MissingOption":
      return `missing --${e.option}`
    default:
      return e.message.split("\n")[0]!
  }
}

/** Usage errors as one line on stderr; help and the version on stdout. */
export const presenter = CliOutput.layerPresenter({
  present: (event) =>
    Effect.gen(function*() {
      const formatter = yield* CliOutput.Formatter
      switch (event._tag) {
        case "Help":
          return yield* Effect.sync(() => void process.stdout.write(`${formatter.formatHelpDoc(event.helpDoc)}\n`))
        case "Version":
          return yield* Effect.sync(() => void process.stdout.write(`${formatter.formatVersion(event.name, event.version)}\n`))
        case "InvalidInvocation": {
          const first = event.errors[0]
          const what = first === undefined ? "invalid command line" : parseErrorLine(first)
          return yield* Effect.sync(() => void process.stderr.write(`p2pchat: ${clean(what)}; ${helpHint(event.commandPath)}\n`))
        }
      }
    })
})

const errorMessage = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" ? e.message : String(e)

const tagOf = (e: unknown): string => typeof e === "object" && e !== null && "_tag" in e ? String(e._tag) : ""

/**
 * The exit code of a failure, after printing it: 2 for a usage error (a parse error, which
 * the presenter has printed, or a UsageError of a command), else 1 with the message.
 */
export const report = (e: unknown): Effect.Effect<number> =>
  Effect.sync(() => {
    const tag = tagOf(e)
    // left at the username question (Ctrl-D): nothing went wrong
    if (tag === "Left") return 0
    if (tag === "ShowHelp") return (e as CliError.ShowHelp).errors.length > 0 ? 2 : 0
    if (tag === "UsageError") {
      const usage = e as UsageError
      const hint = helpHint(["p2pchat", ...(usage.command === undefined ? [] : usage.command.split(" "))])
      process.stderr.write(`p2pchat: ${clean(usage.message)}; ${hint}\n`)
      return 2
    }
    // The message may quote a peer's name (a SendError): sanitised like every printed line.
    process.stderr.write(`p2pchat: ${clean(errorMessage(e))}\n`)
    return 1
  })

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
export const flushOutput = (): Promise<void> => Promise.all([flushed(process.stdout), flushed(process.stderr)]).then(() => {})

/**
 * Exits with `code` once the output is written. The exit itself stays explicit: a command
 * may leave handles open (stdin, sockets of layers being torn down) that would keep the
 * process alive.
 */
export const exitWith = (code: number) => Effect.promise(flushOutput).pipe(Effect.andThen(Effect.sync(() => process.exit(code))))

/**
 * The signal that stopped the program, if one did: runMain interrupts the program on SIGINT
 * and SIGTERM alike (exit 130); the exit code tells them apart, as shells do (128 + the
 * signal's number: 130 for SIGINT, 143 for SIGTERM), once the shutdown (the bye) is done.
 */
let stoppedBy: "SIGINT" | "SIGTERM" | undefined
export const watchSignals = (): void => {
  process.on("SIGINT", () => void (stoppedBy ??= "SIGINT"))
  process.on("SIGTERM", () => void (stoppedBy ??= "SIGTERM"))
}

/** The exit code of an interrupted program (130) told apart by the signal that interrupted it. */
export const signalCode = (code: number): number => code === 130 && stoppedBy === "SIGTERM" ? 143 : code
